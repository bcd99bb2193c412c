"""Augmented copies of training queries, for the transfer set the teacher labels: the
word-level edits of EDA (Wei and Zou 2019) that need no word list or model download, in the
spirit of TinyBERT's task-specific data augmentation.

Each copy of a query drops each word with probability `word_dropout` (keeping at least one),
replaces each remaining word by the mask token with probability `mask`, and swaps each adjacent
pair of words with probability `swap`. The teacher's soft targets say what a copy means; its
original label may no longer hold, so copies carry none.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def augment(text: str, rng: np.random.Generator, word_dropout: float, mask: float, swap: float,
            mask_token: str) -> str:
    """One edited copy of `text` (see the module's docstring)."""
    words = text.split()
    if not words:
        return text
    kept = [w for w in words if rng.random() >= word_dropout] or [words[rng.integers(len(words))]]
    kept = [mask_token if rng.random() < mask else w for w in kept]
    for i in range(len(kept) - 1):
        if rng.random() < swap:
            kept[i], kept[i + 1] = kept[i + 1], kept[i]
    return " ".join(kept)


def copies(texts: Sequence[str], n: int, seed: int, word_dropout: float, mask: float,
           swap: float, mask_token: str) -> list[str]:
    """`n` edited copies of every text, copy by copy (all first copies, then all second ...),
    the same for the same seed. Copies equal to their original add nothing and are left out."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        for text in texts:
            copy = augment(text, rng, word_dropout, mask, swap, mask_token)
            if copy != text:
                out.append(copy)
    return out
