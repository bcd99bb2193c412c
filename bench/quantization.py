"""How to quantize a trained model for ONNX Runtime: size, accuracy and batch-1 latency of each
way the export stage can write its int8 file.

    python -m bench.quantization                      # the workspace's student, after dvc repro
    python -m bench.quantization --role teacher --threads 2

On a workspace whose export stage has run (models/onnx/<role>/model.onnx and the prepared data),
it quantizes the fp32 file with one scale per tensor and per channel, with the embedding
tables in int8 or in 4-bit blocks of 32 and 64 values, and (the last two rows) after ONNX
Runtime's transformer fusions (onnxscript's optimize_for_ort: attention, skip layer norm,
bias GELU), and prints for each the file's size
(also as a share of the PyTorch teacher's weights, the size the README compares with), its
validation and test accuracy, and its median batch-1 latency on 200 test queries.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx_ir
import torch
from onnxscript.rewriter.ort_fusions import optimize_for_ort

from pipeline import onnx_export, paths
from pipeline.config import load_params
from pipeline.inference import logits
from pipeline.models import load_trained
from pipeline.prepared import load_prepared
from pipeline.tasks import get_task

SCHEMES = {
    "one scale per tensor, int8 embeddings": (onnx_export.Remedy("per_tensor"), 8, 0),
    "per channel, int8 embeddings": (onnx_export.REMEDIES[0], 8, 0),
    "per channel, int4 embeddings (blocks of 32)": (onnx_export.REMEDIES[0], 4, 32),
    "per channel, int4 embeddings (blocks of 64)": (onnx_export.REMEDIES[0], 4, 64),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", default="student", choices=["teacher", "student"])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    params = load_params(paths.PARAMS)
    task = get_task(params.task)
    ds, _ = load_prepared(paths.PREPARED)
    _, processor = load_trained(args.role, task)
    max_length, column = params.data.max_length, task.column
    teacher_bytes = (paths.trained("teacher") / "model.safetensors").stat().st_size
    fp32 = paths.onnx(args.role) / onnx_export.FP32

    def measure(path: Path) -> str:
        served = onnx_export.served(path, processor, task, max_length)
        accuracy = {
            split: float((logits(served, task, ds[split][column], 128, desc=split).argmax(-1)
                          == np.asarray(ds[split]["label"])).mean())
            for split in ("validation", "test")
        }
        seconds = []
        for query in ds["test"][column][: args.queries]:
            feed = served.encode([query])
            start = time.perf_counter()
            served.forward(feed)
            seconds.append(time.perf_counter() - start)
        size = path.stat().st_size
        return (f"{size / 2**20:6.1f} MiB ({size / teacher_bytes:5.1%} of the PyTorch teacher)  "
                f"validation {accuracy['validation']:.4f}  test {accuracy['test']:.4f}  "
                f"batch-1 p50 {1000 * np.median(seconds):.2f} ms")

    print(f"{args.role}, {args.threads} threads, ONNX Runtime on the CPU")
    print(f"{'fp32':48s} {measure(fp32)}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name, (remedy, bits, block) in SCHEMES.items():
            out = Path(tmp) / "int8.onnx"
            onnx_export.quantize_int8(fp32, out, remedy, onnx_export.Embeddings(bits, block))
            print(f"{name:48s} {measure(out)}", flush=True)
        fused = Path(tmp) / "fused.onnx"
        model, _ = optimize_for_ort(onnx_ir.load(fp32))
        onnx_ir.save(model, fused)
        print(f"{'fp32, fused':48s} {measure(fused)}", flush=True)
        remedy, bits, block = SCHEMES["per channel, int4 embeddings (blocks of 64)"]
        onnx_export.quantize_int8(fused, out, remedy, onnx_export.Embeddings(bits, block))
        print(f"{'fused, per channel, int4 embeddings (blocks of 64)':48s} {measure(out)}",
              flush=True)


if __name__ == "__main__":
    main()
