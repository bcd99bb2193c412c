"""Batched logits of a classifier over a list of raw inputs (texts or images), in the numerics
the classifier is served with."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel

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


@torch.inference_mode()
def predict_logits(
    model: PreTrainedModel,
    processor: Processor,
    task: TextTask | ImageTask,
    inputs: Sequence[Any],
    batch_size: int,
    max_length: int,
    desc: str = "predict",
) -> np.ndarray:
    """Logits in the order of `inputs`, batched in the order the task prefers (texts by
    length, so that padding stays small)."""
    dev = device()
    model.to(dev).eval()
    order = task.order(inputs)
    out = np.empty((len(inputs), model.config.num_labels), dtype=np.float32)
    with serving_autocast(dev):
        for start in tqdm(range(0, len(inputs), batch_size), desc=desc, unit="batch"):
            rows = order[start : start + batch_size]
            enc = task.batch(processor, [inputs[i] for i in rows], max_length).to(dev)
            out[rows] = model(**enc).logits.float().cpu().numpy()
    return out
