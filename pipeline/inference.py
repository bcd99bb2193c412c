"""Batched logits of a classifier over a list of raw inputs (texts or images)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel

from pipeline.tasks import ImageTask, Processor, TextTask


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


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
    for start in tqdm(range(0, len(inputs), batch_size), desc=desc, unit="batch"):
        rows = order[start : start + batch_size]
        enc = task.batch(processor, [inputs[i] for i in rows], max_length).to(dev)
        with torch.autocast(dev.type, enabled=dev.type == "cuda"):
            logits = model(**enc).logits
        out[rows] = logits.float().cpu().numpy()
    return out
