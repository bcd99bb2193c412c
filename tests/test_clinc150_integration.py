"""CLINC150 as the project ships it (data/clinc150) and as configs/clinc150.yaml reads it."""

import gzip
import hashlib
import json
from collections import Counter
from pathlib import Path

import yaml

from conftest import ROOT, config, run_checked, scratch_project
from pipeline.data import prepare_dataset

CLINC = ROOT / "data" / "clinc150"
CONFIG = ROOT / "configs" / "clinc150.yaml"
TINY_MODEL = {"num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 2,
              "intermediate_size": 64}
# The released files (data/clinc150/README.md); the shipped copies are these, compressed.
SHA256 = {"data_oos_plus.json": "bfcca9ae515623541dc1983c94c4ed7cae9d26b42ae47d74b972e51bb6f7a21f",
          "data_full.json": "36923c3705a59e08fe9c3883d8bc2dd966ef93e22cb78ac41171782a698d56e0"}


def prepare(name: str):
    path = CLINC / f"{name}.gz"
    assert hashlib.sha256(gzip.decompress(path.read_bytes())).hexdigest() == SHA256[name]
    return prepare_dataset(config("data", source=str(path)), seed=0)


def intents() -> set[str]:
    domains = json.loads((CLINC / "domains.json").read_text())
    return {intent for names in domains.values() for intent in names}


def test_config_reads_the_shipped_plus_copy():
    data = yaml.safe_load(CONFIG.read_text())["data"]
    assert data["source"] == data["watch"] == "data/clinc150/data_oos_plus.json.gz"
    ds, names = prepare("data_oos_plus.json")
    assert [len(ds[s]) for s in ("train", "validation", "test")] == [15250, 3100, 5500]
    assert len(names) == 151 and set(names) == intents() | {"oos"}
    oos = names.index("oos")
    assert sum(label == oos for label in ds["train"]["label"]) == 250


def test_full_layout_has_fewer_oos_train_rows():
    ds, names = prepare("data_full.json")
    assert [len(ds[s]) for s in ("train", "validation", "test")] == [15100, 3100, 5500]
    assert len(names) == 151


def write_slice(path: Path, per_label: dict[str, int]) -> None:
    """The first rows of every label of each split, in the CLINC layout, gzipped."""
    raw = json.loads(gzip.decompress((CLINC / "data_oos_plus.json.gz").read_bytes()))
    sliced = {}
    for key, rows in raw.items():
        n, taken = per_label[key.removeprefix("oos_")], Counter()
        sliced[key] = []
        for query, label in rows:
            if taken[label] < n:
                taken[label] += 1
                sliced[key].append([query, label])
    path.parent.mkdir(parents=True)
    path.write_bytes(gzip.compress(json.dumps(sliced).encode(), mtime=0))


def test_clinc150_config_end_to_end_on_a_slice(tmp_path):
    """`dvc repro` of configs/clinc150.yaml with tiny models on a few rows of every label."""
    params = yaml.safe_load(CONFIG.read_text())
    source = "data/clinc150_slice/data_oos_plus.json.gz"
    write_slice(tmp_path / source, {"train": 3, "val": 1, "test": 2})
    params["data"].update(source=source, watch=source)
    params["teacher"]["config_overrides"] = TINY_MODEL
    params["student"]["layers"] = [1]
    for role in ("teacher", "student"):
        params[role]["train"].update(epochs=1, batch_size=32, learning_rate=1e-3)
    params["evaluate"].update(latency_runs=3, latency_warmup=1)
    scratch_project(tmp_path, params)
    run_checked(["dvc", "repro"], tmp_path)

    report = json.loads((tmp_path / "reports/data.json").read_text())
    assert report["rows"] == {"train": 150 * 3 + 3, "validation": 150 + 1, "test": 150 * 2 + 2}
    assert report["num_labels"] == 151 and report["has_oos_label"] is True
    assert report["source_revision"] is None
    metrics = json.loads((tmp_path / "reports/metrics.json").read_text())
    for role in ("teacher", "baseline", "student"):
        for key in ("accuracy", "macro_f1", "in_scope_accuracy", "oos_recall", "oos_precision"):
            assert 0.0 <= metrics[role][key] <= 1.0, (role, key)
    assert metrics["ensemble"]["teachers"] == 1 + len(params["soft_targets"]["ensemble_seeds"]) > 1
    assert "larson-etal-2019-evaluation" in (tmp_path / "models/student/README.md").read_text()
