"""data/prepared, the prepare stage's output: written once, read by every later stage.

Kept apart from pipeline/data.py (reading sources), so that a change to how sources are read
reruns prepare, and the stages after it only if the prepared data itself changes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import datasets
from datasets import DatasetDict

from pipeline.inputs import reading

# The stage that writes data/prepared.
STAGE = "prepare"


def load_prepared(folder: str | Path) -> tuple[DatasetDict, list[str]]:
    with reading(folder, STAGE) as folder:
        ds = datasets.load_from_disk(str(folder))
        names = json.loads((folder / "labels.json").read_text())
    return ds, names


def digest(ds: DatasetDict, names: list[str]) -> str:
    """What the prepared data is, in 16 hex digits: its splits' fingerprints (hashes of the
    saved bytes, see _pin_fingerprint) and its label names."""
    parts = [f"{split}:{ds[split]._fingerprint}" for split in sorted(ds)]
    return hashlib.sha256(json.dumps([parts, names]).encode()).hexdigest()[:16]


def _pin_fingerprint(split_folder: Path) -> None:
    """Replace the fingerprint save_to_disk wrote by a hash of the saved data.

    datasets derives a split's fingerprint from the history of its cache files: their paths and
    modification times. Two clones with the same data and params would then write different
    state.json files, and DVC would rerun every stage after prepare. A fingerprint of the saved
    bytes stays what datasets needs (the same content, the same key for its map caches) and is
    the same in every clone.
    """
    state_file = split_folder / "state.json"
    state = json.loads(state_file.read_text())
    digest = hashlib.sha256((split_folder / "dataset_info.json").read_bytes())
    for data_file in state["_data_files"]:
        with (split_folder / data_file["filename"]).open("rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
    # The length of datasets' own fingerprints, and the file as datasets itself writes it.
    state["_fingerprint"] = digest.hexdigest()[:16]
    state_file.write_text(json.dumps(state, indent=2, sort_keys=True))


def save_prepared(ds: DatasetDict, names: list[str], folder: str | Path) -> None:
    folder = Path(folder)
    ds.save_to_disk(str(folder))
    for split in ds:
        _pin_fingerprint(folder / split)
    (folder / "labels.json").write_text(json.dumps(names, indent=1) + "\n")
