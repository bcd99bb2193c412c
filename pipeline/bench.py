"""Speed and size of a classifier on the machine that runs the evaluation."""

from __future__ import annotations

import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedModel

from pipeline.inference import device
from pipeline.tasks import ImageTask, Processor, TextTask


def device_name() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


@torch.inference_mode()
def latency_ms(
    models: dict[str, tuple[PreTrainedModel, Processor]],
    task: TextTask | ImageTask,
    inputs: Sequence[Any],
    runs: int,
    warmup: int,
    max_length: int,
) -> dict[str, dict[str, float]]:
    """Batch-1 latency of preprocessed inputs per model (median and p95 over `runs`, after
    `warmup`).

    The models take turns query by query: on a shared machine the speed drifts, and timing one
    model after the other would charge the drift to whichever ran last.
    """
    dev = device()
    queries = inputs[: max(runs, warmup)]
    encoded = {}
    for name, (model, processor) in models.items():
        model.to(dev).eval()
        encoded[name] = [task.batch(processor, [x], max_length).to(dev) for x in queries]
        for enc in encoded[name][:warmup]:
            model(**enc)
    times: dict[str, list[float]] = {name: [] for name in models}
    for i in range(runs):
        for name, (model, _) in models.items():
            enc = encoded[name][i % len(queries)]
            _sync()
            start = time.perf_counter()
            model(**enc)
            _sync()
            times[name].append((time.perf_counter() - start) * 1000)
    return {
        name: {"latency_ms_median": float(np.median(t)), "latency_ms_p95": float(np.percentile(t, 95))}
        for name, t in times.items()
    }


@torch.inference_mode()
def throughput(
    model: PreTrainedModel,
    processor: Processor,
    task: TextTask | ImageTask,
    inputs: Sequence[Any],
    batch_size: int,
    max_length: int,
) -> float:
    """Examples per second at `batch_size`, over all of `inputs` after one warm-up batch."""
    dev = device()
    model.to(dev).eval()
    batches = [
        task.batch(processor, inputs[i : i + batch_size], max_length).to(dev)
        for i in range(0, len(inputs), batch_size)
    ]
    model(**batches[0])
    _sync()
    start = time.perf_counter()
    for enc in batches:
        model(**enc)
    _sync()
    return len(inputs) / (time.perf_counter() - start)


def size_on_disk_mb(folder: str | Path) -> float:
    """Size of the weights files (tokenizer and config files are the same for every model)."""
    return sum(p.stat().st_size for p in Path(folder).glob("*.safetensors")) / 2**20
