"""Speed and size of classifiers on the machine that runs the evaluation.

Every timed forward pass is the one whose predictions are scored (pipeline.inference.Served):
PyTorch models in their serving numerics, ONNX models through ONNX Runtime.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.inference import Served


# Seconds each model's turn waits before it starts: the threads of the model before it (ONNX
# Runtime's and PyTorch's OpenMP pool) spin on for a while after their last run and would take
# the cores from it. bench/latency_methods.py measured the effect (CLINC150, 2 threads): with
# the wait, each ONNX model's median in turns matches its median in a process of its own.
SETTLE_S = 0.2


def device_name() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def _timed(served: Served, enc: Any) -> float:
    """Milliseconds of one forward pass, the logits back on the host (so queued GPU work is
    included)."""
    start = time.perf_counter()
    served.forward(enc)
    return (time.perf_counter() - start) * 1000


def latency_ms(
    models: dict[str, Served],
    inputs: Sequence[Any],
    runs: int,
    warmup: int,
    block: int,
    seed: int,
    settle_s: float = SETTLE_S,
) -> dict[str, dict[str, float]]:
    """Batch-1 latency of preprocessed inputs per model: median and p95 over `runs` queries
    drawn at random from `inputs` (seeded, the same queries for every model; cycled when
    `inputs` has fewer), after `warmup` of them.

    A random draw, not the first rows: a split sorted by label would time the queries of a few
    labels only. The models take turns in blocks of `block` queries: on a shared machine the
    speed drifts, and timing one model after the other would charge the drift to whichever ran
    last; but turns of single queries would charge each model for the one before it (its
    threads spin on after a run and slow whatever runs next). Each turn starts after a pause
    (`settle_s`) and one untimed query, so that a model is timed as it runs when it is served on
    its own.
    """
    size = min(max(runs, warmup), len(inputs))
    drawn = np.random.default_rng(seed).choice(len(inputs), size, replace=False)
    queries = [inputs[int(i)] for i in drawn]
    encoded = {name: [m.encode([x]) for x in queries] for name, m in models.items()}
    for name, m in models.items():
        for enc in encoded[name][:warmup]:
            m.forward(enc)
    times: dict[str, list[float]] = {name: [] for name in models}
    for first in range(0, runs, block):
        for name, m in models.items():
            time.sleep(settle_s)
            m.forward(encoded[name][first % size])
            times[name] += [_timed(m, encoded[name][i % size])
                            for i in range(first, min(first + block, runs))]
    return {
        name: {"latency_ms_median": float(np.median(t)),
               "latency_ms_p95": float(np.percentile(t, 95))}
        for name, t in times.items()
    }


def throughput(
    models: dict[str, Served],
    inputs: Sequence[Any],
    batch_size: int,
    block: int,
    settle_s: float = SETTLE_S,
) -> dict[str, float]:
    """Examples per second of each model at `batch_size`, over all of `inputs` (the same
    batches for every model) after one warm-up batch.

    The models take turns in blocks of `block` batches, each turn after a pause (`settle_s`) and
    an untimed batch, for the reasons latency_ms gives. A batch is preprocessed just before its
    timed pass, so that only one batch per model is held at a time.
    """
    spans = [(i, min(i + batch_size, len(inputs))) for i in range(0, len(inputs), batch_size)]
    seconds = dict.fromkeys(models, 0.0)
    for m in models.values():
        m.forward(m.encode(inputs[spans[0][0] : spans[0][1]]))
    for first in range(0, len(spans), block):
        for name, m in models.items():
            time.sleep(settle_s)
            m.forward(m.encode(inputs[spans[first][0] : spans[first][1]]))
            for start, stop in spans[first : first + block]:
                seconds[name] += _timed(m, m.encode(inputs[start:stop])) / 1000
    return {name: len(inputs) / s for name, s in seconds.items()}


def size_on_disk_mb(path: str | Path) -> float:
    """Size of the weights: a folder's safetensors files, or one file (ONNX). Tokenizer and
    config files are the same for every model and left out."""
    path = Path(path)
    files = path.glob("*.safetensors") if path.is_dir() else [path]
    return sum(p.stat().st_size for p in files) / 2**20
