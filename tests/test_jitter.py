"""Input jitter: each training image moved by a few pixels, the border filled from the edge."""

import numpy as np
from datasets import Dataset
from PIL import Image

from pipeline.jitter import jittered, shift, shifted_copies


class FixedOffsets:
    """A generator stand-in that returns chosen offsets (rows dy, then dx)."""

    def __init__(self, offsets: list[list[int]]) -> None:
        self.offsets = np.array(offsets)

    def integers(self, low: int, high: int, size: tuple) -> np.ndarray:
        assert (low, high) == (0, 5) and size == self.offsets.shape
        return self.offsets


def test_shift_moves_each_image_by_its_offset_and_repeats_the_edge():
    image = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    batch = np.concatenate([image, image])
    # Padded by 2, offset 2 is no move. The first image's window starts a row and two columns
    # early (dy 1, dx 0): it moves 1 down and 2 right. The second stays (dy 2, dx 2).
    out = shift(batch, 2, FixedOffsets([[1, 2], [0, 2]]))
    assert out.shape == batch.shape
    np.testing.assert_array_equal(out[1], image[0])
    expected = np.array([[0, 0, 0, 1], [0, 0, 0, 1], [4, 4, 4, 5], [8, 8, 8, 9]], np.float32)
    np.testing.assert_array_equal(out[0, 0], expected)


def test_shifts_stay_within_the_bound_and_vary():
    rng = np.random.default_rng(0)
    image = np.zeros((1, 1, 9, 9), np.float32)
    image[0, 0, 4, 4] = 1.0
    out = shift(np.repeat(image, 200, axis=0), 2, rng)
    rows, cols = np.nonzero(out[:, 0].reshape(200, 9, 9).sum(axis=0))
    assert set(rows) == set(cols) == {2, 3, 4, 5, 6}
    assert np.all(out.sum(axis=(1, 2, 3)) == 1.0)  # the pixel is moved, never lost


def test_jittered_dataset_shifts_on_every_read_and_keeps_other_columns():
    np.random.seed(0)
    pixels = np.random.rand(8, 1, 6, 6).astype(np.float32)
    train = Dataset.from_dict({"pixel_values": pixels.tolist(), "label": list(range(8))})
    shifted = jittered(train, 1)
    first, second = shifted[:8], shifted[:8]
    assert first["label"] == list(range(8))
    assert np.asarray(first["pixel_values"]).shape == pixels.shape
    assert not np.array_equal(first["pixel_values"], second["pixel_values"])
    # The dataset itself is untouched: evaluation reads it as it was.
    np.testing.assert_allclose(np.asarray(train[:8]["pixel_values"]), pixels, rtol=1e-6)


def test_shifted_copies_move_each_image_and_are_the_same_for_the_same_seed():
    dots = []
    for row in range(3, 6):
        pixels = np.zeros((9, 9), np.uint8)
        pixels[row, 4] = 255
        dots.append(Image.fromarray(pixels, mode="L"))
    copies = shifted_copies(dots, 4, 2, seed=7)
    assert len(copies) == 12
    assert all(c.size == (9, 9) and c.mode == "L" for c in copies)
    # Copy by copy: the k-th image of each copy is a shift of the k-th original, the dot kept.
    for i, c in enumerate(copies):
        (row,), (col,) = np.nonzero(np.asarray(c))
        assert abs(row - (3 + i % 3)) <= 2 and abs(col - 4) <= 2
    assert len({np.asarray(c).tobytes() for c in copies}) > 3
    again = shifted_copies(dots, 4, 2, seed=7)
    assert [np.asarray(c).tolist() for c in again] == [np.asarray(c).tolist() for c in copies]


def test_shifted_copies_of_colour_images_keep_their_channels():
    rgb = Image.fromarray(np.arange(5 * 5 * 3, dtype=np.uint8).reshape(5, 5, 3), mode="RGB")
    (copy,) = shifted_copies([rgb], 1, 1, seed=0)
    assert copy.mode == "RGB" and copy.size == (5, 5)
    assert set(np.asarray(copy)[2, 2]) <= set(range(75))
