"""`prepare` in two clones of one project: same data and params, so the same bytes, whatever the
clones' paths and file times (else DVC reruns every stage after it in the second clone)."""

import csv
import os
from pathlib import Path

import yaml

from conftest import ROOT, run_checked, scratch_project
from pipeline.prepared import load_prepared

LABELS = ("balance", "oos", "transfer")


def write_data(folder: Path) -> None:
    """Train and validation files; prepare carves the test split out of train."""
    folder.mkdir(parents=True)
    for split, n in (("train", 10), ("validation", 3)):
        with (folder / f"{split}.csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["text", "label"])
            writer.writerows([f"{split} query {i} about {label}", label]
                             for label in LABELS for i in range(n))


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def test_two_clones_prepare_the_same_bytes(tmp_path):
    first, second = tmp_path / "a" / "project", tmp_path / "elsewhere" / "b" / "clone"
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"].update(source="data/tiny", watch="data/tiny")
    write_data(first / "data" / "tiny")
    scratch_project(first, params)
    second.parent.mkdir(parents=True)
    run_checked(["git", "clone", "-q", str(first), str(second)], tmp_path)
    for path in (second / "data" / "tiny").iterdir():
        os.utime(path, (1_000_000_000, 1_000_000_000))

    for clone in (first, second):
        # Each clone with its own datasets cache, as on two machines.
        run_checked(["python", "-m", "stages.prepare"], clone,
                    {"HF_DATASETS_CACHE": str(clone.parent / "hf-datasets")})

    prepared = [files(clone / "data" / "prepared") for clone in (first, second)]
    assert prepared[0].keys() == prepared[1].keys()
    differ = [name for name in prepared[0] if prepared[0][name] != prepared[1][name]]
    assert differ == []
    assert files(first / "reports") == files(second / "reports")

    ds, names = load_prepared(second / "data" / "prepared")
    assert names == list(LABELS)
    assert sum(len(part) for part in ds.values()) == 39
