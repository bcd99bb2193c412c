"""Speed and size of classifiers on the machine that runs the evaluation.

Every timed forward pass runs in the numerics the model is served with
(pipeline.inference.serving_autocast), the same as the passes whose predictions are scored.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import BatchFeature, PreTrainedModel

from pipeline import inference
from pipeline.tasks import ImageTask, Processor, TextTask


def device_name() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _timed_forward(model: PreTrainedModel, enc: BatchFeature) -> float:
    """Seconds of one forward pass, queued GPU work included."""
    _sync()
    start = time.perf_counter()
    model(**enc)
    _sync()
    return time.perf_counter() - start


@torch.inference_mode()
def latency_ms(
    models: dict[str, tuple[PreTrainedModel, Processor]],
    task: TextTask | ImageTask,
    inputs: Sequence[Any],
    runs: int,
    warmup: int,
    max_length: int,
    seed: int,
) -> dict[str, dict[str, float]]:
    """Batch-1 latency of preprocessed inputs per model: median and p95 over `runs` queries
    drawn at random from `inputs` (seeded, the same queries for every model; cycled when
    `inputs` has fewer), after `warmup` of them.

    A random draw, not the first rows: a split sorted by label would time the queries of a few
    labels only. The models take turns query by query: on a shared machine the speed drifts,
    and timing one model after the other would charge the drift to whichever ran last.
    """
    dev = inference.device()
    size = min(max(runs, warmup), len(inputs))
    drawn = np.random.default_rng(seed).choice(len(inputs), size, replace=False)
    queries = [inputs[int(i)] for i in drawn]
    encoded = {}
    with inference.serving_autocast(dev):
        for name, (model, processor) in models.items():
            model.to(dev).eval()
            encoded[name] = [task.batch(processor, [x], max_length).to(dev) for x in queries]
            for enc in encoded[name][:warmup]:
                model(**enc)
        times: dict[str, list[float]] = {name: [] for name in models}
        for i in range(runs):
            for name, (model, _) in models.items():
                times[name].append(_timed_forward(model, encoded[name][i % size]) * 1000)
    return {
        name: {"latency_ms_median": float(np.median(t)),
               "latency_ms_p95": float(np.percentile(t, 95))}
        for name, t in times.items()
    }


@torch.inference_mode()
def throughput(
    models: dict[str, tuple[PreTrainedModel, Processor]],
    task: TextTask | ImageTask,
    inputs: Sequence[Any],
    batch_size: int,
    max_length: int,
) -> dict[str, float]:
    """Examples per second of each model at `batch_size`, over all of `inputs` (the same
    batches for every model) after one warm-up batch.

    The models take turns batch by batch, for the reason latency_ms takes turns query by query.
    A batch is preprocessed and moved to the device just before its timed pass, so that only
    one batch per model is held at a time.
    """
    dev = inference.device()
    spans = [(i, min(i + batch_size, len(inputs))) for i in range(0, len(inputs), batch_size)]
    seconds = dict.fromkeys(models, 0.0)
    with inference.serving_autocast(dev):
        for model, processor in models.values():
            model.to(dev).eval()
            model(**task.batch(processor, inputs[spans[0][0] : spans[0][1]], max_length).to(dev))
        for start, stop in spans:
            chunk = inputs[start:stop]
            for name, (model, processor) in models.items():
                enc = task.batch(processor, chunk, max_length).to(dev)
                seconds[name] += _timed_forward(model, enc)
    return {name: len(inputs) / s for name, s in seconds.items()}


def size_on_disk_mb(folder: str | Path) -> float:
    """Size of the weights files (tokenizer and config files are the same for every model)."""
    return sum(p.stat().st_size for p in Path(folder).glob("*.safetensors")) / 2**20
