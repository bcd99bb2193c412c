"""Batched logits of a classifier over a list of texts."""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@torch.inference_mode()
def predict_logits(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    batch_size: int,
    max_length: int,
    desc: str = "predict",
) -> np.ndarray:
    """Logits in the order of `texts`. Rows are batched by length so padding stays small."""
    dev = device()
    model.to(dev).eval()
    order = np.argsort([len(t) for t in texts], kind="stable")
    out = np.empty((len(texts), model.config.num_labels), dtype=np.float32)
    for start in tqdm(range(0, len(texts), batch_size), desc=desc, unit="batch"):
        rows = order[start : start + batch_size]
        enc = tokenizer(
            [texts[i] for i in rows],
            truncation=True,
            max_length=max_length,
            padding=True,
            return_tensors="pt",
        ).to(dev)
        with torch.autocast(dev.type, enabled=dev.type == "cuda"):
            logits = model(**enc).logits
        out[rows] = logits.float().cpu().numpy()
    return out
