"""Images moved by a few pixels: the input jitter Hinton et al.'s MNIST teacher was trained
with (2012, 2015: "jittered by up to two pixels in any direction"), and the shifted copies of
the training images a transfer set can hold.

Jitter draws the shift anew each time an image is read, so every epoch sees other copies; the
validation split is never shifted.
"""

from __future__ import annotations

import numpy as np
from datasets import Dataset
from PIL import Image


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


def shifted_copies(images: list[Image.Image], n: int, max_shift: int,
                   seed: int) -> list[Image.Image]:
    """`n` copies of every image, each shifted by up to `max_shift` pixels along each axis,
    copy by copy (all first copies, then all second ...), the same for the same seed.

    The images must share one size and mode, as a prepared split's do."""
    rng = np.random.default_rng(seed)
    pixels = np.stack([np.asarray(im) for im in images])
    # (N, H, W) or (N, H, W, C) -> (N, C, H, W), the layout shift() moves.
    planes = pixels[:, None] if pixels.ndim == 3 else pixels.transpose(0, 3, 1, 2)
    mode = images[0].mode
    out = []
    for _ in range(n):
        moved = shift(planes, max_shift, rng)
        moved = moved[:, 0] if pixels.ndim == 3 else moved.transpose(0, 2, 3, 1)
        out += [Image.fromarray(m, mode=mode) for m in moved]
    return out
