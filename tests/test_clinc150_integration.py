"""Integration tests on the real CLINC150 copy in ../shared/data/clinc150 (skipped without it)."""

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.config import DataConfig
from pipeline.data import prepare_dataset

ROOT = Path(__file__).parents[1]
CLINC = ROOT.parent / "shared" / "data" / "clinc150"
pytestmark = pytest.mark.skipif(
    not (CLINC / "data_oos_plus.json").exists(),
    reason=f"the CLINC150 copy is not at {CLINC} (it sits beside the project on dev machines and CI)",
)


def test_plus_layout_matches_the_hub_splits():
    ds, names = prepare_dataset(DataConfig(source=str(CLINC / "data_oos_plus.json")), seed=0)
    assert [len(ds[s]) for s in ("train", "validation", "test")] == [15250, 3100, 5500]
    assert len(names) == 151 and "oos" in names


def test_full_layout_has_fewer_oos_train_rows():
    ds, names = prepare_dataset(DataConfig(source=str(CLINC / "data_full.json")), seed=0)
    assert len(ds["train"]) == 15100 and len(names) == 151


def stratified_slice(per_label: dict[str, int], seed: int = 0) -> dict:
    """A few rows of every label from each split, in the original layout."""
    raw = json.loads((CLINC / "data_oos_plus.json").read_text())
    rng = random.Random(seed)
    out = {}
    for key, rows in raw.items():
        by_label: dict[str, list] = {}
        for text, label in rows:
            by_label.setdefault(label, []).append([text, label])
        n = per_label[key.removeprefix("oos_")]
        out[key] = [r for label in sorted(by_label) for r in rng.sample(by_label[label], n)]
    return out


def test_prepare_and_evaluate_on_a_slice(tmp_path):
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from pipeline.models import resolve

    (tmp_path / "data").mkdir()
    sliced = stratified_slice({"train": 2, "val": 1, "test": 2})
    (tmp_path / "data" / "clinc_slice.json").write_text(json.dumps(sliced))
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"].update(source="data/clinc_slice.json", watch="data/clinc_slice.json")
    params["evaluate"].update(latency_runs=3, latency_warmup=1)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"}

    def stage(name):
        out = subprocess.run([sys.executable, "-m", f"stages.{name}"], cwd=tmp_path, env=env,
                             capture_output=True, text=True)
        assert out.returncode == 0, out.stderr[-3000:]

    stage("prepare")
    report = json.loads((tmp_path / "reports/data.json").read_text())
    assert report["num_labels"] == 151 and report["rows"]["test"] == 150 * 2 + 2
    labels = json.loads((tmp_path / "data/prepared/labels.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(resolve("minilm-l6"))
    for seed, (role, layers) in enumerate((("teacher", 2), ("baseline", 1), ("student", 1))):
        config = BertConfig(hidden_size=32, num_hidden_layers=layers, num_attention_heads=2,
                            intermediate_size=64, num_labels=len(labels),
                            id2label=dict(enumerate(labels)))
        folder = tmp_path / "models/trained" / role
        BertForSequenceClassification(config).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    stage("evaluate")
    metrics = json.loads((tmp_path / "reports/metrics.json").read_text())
    for role in ("teacher", "baseline", "student"):
        assert {"accuracy", "macro_f1", "in_scope_accuracy", "oos_recall", "oos_precision",
                "ece", "parameters", "size_mb"} <= set(metrics[role])
        assert {"latency_ms_median", "latency_ms_p95", "throughput_per_s"} <= set(metrics["speed"][role])
    for name in ("top_confusions.png", "per_class_f1.png", "reliability.png",
                 "accuracy_vs_latency.png", "per_class_f1.csv"):
        assert (tmp_path / "reports/plots" / name).stat().st_size > 0
    shutil.rmtree(tmp_path / "models")
