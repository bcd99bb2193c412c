"""Input jitter for image training: each training image moved by a few pixels, as Hinton et
al.'s MNIST teacher was trained (2012, 2015: "jittered by up to two pixels in any direction").

The shift is drawn anew each time an image is drawn, so every epoch sees other copies; the
validation split is never shifted.
"""

from __future__ import annotations

import numpy as np
from datasets import Dataset


def shift(pixels: np.ndarray, max_shift: int, rng: np.random.Generator) -> np.ndarray:
    """Each image of an (N, C, H, W) batch moved by up to `max_shift` pixels along each axis.

    The uncovered border repeats the edge pixels: that is the background whatever the
    normalisation, where a constant fill would have to know it."""
    n, _, h, w = pixels.shape
    pad = (max_shift, max_shift)
    padded = np.pad(pixels, ((0, 0), (0, 0), pad, pad), mode="edge")
    dy, dx = rng.integers(0, 2 * max_shift + 1, size=(2, n))
    return np.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])


def jittered(train: Dataset, max_shift: int) -> Dataset:
    """`train` with its `pixel_values` shifted on the fly each time a batch is read."""

    def transform(batch: dict) -> dict:
        pixels = np.asarray(batch["pixel_values"], dtype=np.float32)
        # Seeded from numpy's global generator, which the Trainer seeds and restores with a
        # checkpoint: a resumed run draws the shifts an uninterrupted one would.
        rng = np.random.default_rng(np.random.randint(2**31))
        batch["pixel_values"] = shift(pixels, max_shift, rng)
        return batch

    return train.with_transform(transform)
