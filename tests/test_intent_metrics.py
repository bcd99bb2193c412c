"""pipeline/intent_metrics: the project's metric set as a local `evaluate` module, loaded by
path offline, giving the figures the evaluate stage reports."""

import os
import shutil
import subprocess
import sys

import evaluate
import numpy as np
import pytest
from conftest import ROOT

from pipeline.metrics import quality

MODULE = ROOT / "pipeline" / "intent_metrics"
NAMES = ["balance", "oos", "transfer", "card_lost"]  # card_lost: in no reference, never predicted
REFERENCES = np.array([0, 0, 1, 1, 2, 2])
PREDICTIONS = np.array([0, 1, 1, 1, 2, 0])
# Each row's largest probability is its prediction, and the confidences fall in six different
# bins of 15, away from the bin edges.
SCORES = np.array([
    [0.90, 0.05, 0.03, 0.02],  # right
    [0.20, 0.62, 0.10, 0.08],  # wrong
    [0.10, 0.75, 0.10, 0.05],  # right
    [0.02, 0.95, 0.02, 0.01],  # right
    [0.25, 0.10, 0.55, 0.10],  # right
    [0.45, 0.20, 0.30, 0.05],  # wrong
])
# By hand. F1: balance 2*1 / (2*1 + 1 FP + 1 FN) = 0.5, oos 2*2 / (2*2 + 1 FP) = 0.8,
# transfer 2*1 / (2*1 + 1 FN) = 2/3; card_lost is not in the references, so not averaged.
# ECE: one row per bin, so the mean |correct - confidence| over the rows.
EXPECTED = {
    "accuracy": 4 / 6,
    "macro_f1": (0.5 + 0.8 + 2 / 3) / 3,
    "ece": (0.10 + 0.62 + 0.25 + 0.05 + 0.45 + 0.45) / 6,
}
EXPECTED_OOS = {
    "in_scope_accuracy": 2 / 4,  # balance and transfer queries: rows 0 and 4 right
    "oos_recall": 2 / 2,
    "oos_precision": 2 / 3,
}


@pytest.fixture(scope="session")
def modules_cache(tmp_path_factory):
    """A fresh modules cache for evaluate.load, whatever the home folder holds or allows.

    One per session: evaluate imports its copies as a package rooted in the first cache folder
    it used in the process, and would not find a copy made in another one.
    """
    cache = tmp_path_factory.mktemp("evaluate")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(evaluate.config, "HF_MODULES_CACHE", cache / "modules")
        yield cache


def load(path, cache, config_name=None):
    return evaluate.load(str(path), config_name, cache_dir=str(cache / "metrics"),
                         keep_in_memory=True)


@pytest.mark.parametrize("oos", [True, False])
def test_module_gives_the_pipelines_figures(modules_cache, oos):
    metric = load(MODULE, modules_cache)
    got = metric.compute(predictions=PREDICTIONS, references=REFERENCES, prediction_scores=SCORES,
                         oos_label_id=1 if oos else None)
    expected = {**EXPECTED, **(EXPECTED_OOS if oos else {})}
    assert got == pytest.approx(expected, abs=1e-12)
    assert quality(REFERENCES, np.log(SCORES), NAMES, "oos" if oos else None, 15) == \
        pytest.approx(expected, abs=1e-12)


def test_labels_only_leaves_ece_out_and_adds_up_batches(modules_cache):
    metric = load(MODULE, modules_cache, "labels_only")
    for rows in (slice(0, 4), slice(4, 6)):
        metric.add_batch(predictions=PREDICTIONS[rows], references=REFERENCES[rows])
    expected = {k: v for k, v in {**EXPECTED, **EXPECTED_OOS}.items() if k != "ece"}
    assert metric.compute(oos_label_id=1) == pytest.approx(expected, abs=1e-12)


def test_an_edited_module_file_is_loaded_not_a_stale_copy(modules_cache, tmp_path):
    folder = tmp_path / "intent_metrics"
    shutil.copytree(MODULE, folder)
    before = load(folder, modules_cache).compute(
        predictions=PREDICTIONS, references=REFERENCES, prediction_scores=SCORES)
    assert before["accuracy"] == pytest.approx(4 / 6)
    with (folder / "intent_metrics.py").open("a") as f:
        f.write("\n\ndef accuracy_and_f1(labels, preds):\n"
                "    return {'accuracy': -1.0, 'macro_f1': -1.0}\n")
    after = load(folder, modules_cache).compute(
        predictions=PREDICTIONS, references=REFERENCES, prediction_scores=SCORES)
    assert after["accuracy"] == -1.0


def test_offline_from_a_home_folder_nothing_can_be_written_to(tmp_path):
    """The evaluate stage's path needs no writable home folder; evaluate.load needs only a
    writable modules cache (HF_MODULES_CACHE) and cache_dir."""
    (tmp_path / "file").write_text("")
    home = tmp_path / "file" / "home"  # under a file: no one, root included, can create it
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "XDG_"))}
    env.update(HOME=str(home), HF_HUB_OFFLINE="1", HF_EVALUATE_OFFLINE="1",
               HF_DATASETS_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"))
    script = f"""
import evaluate, numpy as np
from pipeline.metrics import quality
refs, preds, scores = np.array({REFERENCES.tolist()}), np.array({PREDICTIONS.tolist()}), \\
    np.array({SCORES.tolist()})
print(quality(refs, np.log(scores), {NAMES!r}, "oos", 15) == evaluate.load(
    {str(MODULE)!r}, cache_dir={str(tmp_path / "metrics")!r}, keep_in_memory=True).compute(
    predictions=preds, references=refs, prediction_scores=scores, oos_label_id=1))
"""
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "True"
    assert not home.exists()
