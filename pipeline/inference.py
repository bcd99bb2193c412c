"""Batched logits of a classifier over a list of raw inputs (texts or images), in the numerics
the classifier is served with."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import BatchFeature, PreTrainedModel

from pipeline.numerics import mixed_precision
from pipeline.tasks import ImageTask, Processor, TextTask

_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def serving_numerics() -> str:
    """The numerics a trained model is served with here: "fp32" on the CPU; on CUDA the mixed
    precision its training ran in (pipeline.numerics.mixed_precision), "bf16" where the GPU
    supports it, else "fp16".

    Quality (predict_logits) and speed (pipeline.speed) both run in it, so that the accuracy
    reported and the latency reported are those of one and the same model.
    """
    return mixed_precision()


def serving_autocast(dev: torch.device) -> contextlib.AbstractContextManager:
    """The context every evaluation forward pass on `dev` runs in: autocast to
    serving_numerics()'s dtype, as training's forward passes did, or plain fp32."""
    numerics = serving_numerics()
    if numerics == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(dev.type, dtype=_AUTOCAST_DTYPES[numerics])


@dataclass(frozen=True)
class Served:
    """A model as it answers queries, whatever runs it (PyTorch here, ONNX Runtime in
    pipeline.onnx_export): raw inputs -> its inputs, ready on its device; its inputs -> logits
    as numpy. Quality and speed are measured through this one interface for every format."""

    encode: Callable[[Sequence[Any]], Any]
    forward: Callable[[Any], np.ndarray]


def pytorch(model: PreTrainedModel, processor: Processor, task: TextTask | ImageTask,
            max_length: int) -> Served:
    """A PyTorch classifier on device(), in the serving numerics."""
    dev = device()
    model.to(dev).eval()

    def forward(enc: BatchFeature) -> np.ndarray:
        with torch.inference_mode(), serving_autocast(dev):
            return model(**enc).logits.float().cpu().numpy()

    return Served(encode=lambda inputs: task.batch(processor, list(inputs), max_length).to(dev),
                  forward=forward)


def logits(served: Served, task: TextTask | ImageTask, inputs: Sequence[Any], batch_size: int,
           desc: str = "predict") -> np.ndarray:
    """Logits in the order of `inputs`, batched in the order the task prefers (texts by
    length, so that padding stays small)."""
    order = task.order(inputs)
    parts = [served.forward(served.encode([inputs[i] for i in order[start : start + batch_size]]))
             for start in tqdm(range(0, len(inputs), batch_size), desc=desc, unit="batch")]
    batched = np.concatenate(parts)
    out = np.empty_like(batched)
    out[order] = batched
    return out


def predict_logits(
    model: PreTrainedModel,
    processor: Processor,
    task: TextTask | ImageTask,
    inputs: Sequence[Any],
    batch_size: int,
    max_length: int,
    desc: str = "predict",
) -> np.ndarray:
    """Logits of a PyTorch classifier in the order of `inputs`."""
    return logits(pytorch(model, processor, task, max_length), task, inputs, batch_size, desc)
