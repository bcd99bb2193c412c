"""What `dvc plots show` makes of dvc.yaml's plots, on the committed reports: each plot once, as
what it is; and DVCLive writes only the curves a user reads."""

import json
import re
import subprocess
import sys
from types import SimpleNamespace

import pytest
from dvclive import Live
from transformers import TrainingArguments

from conftest import ROOT
from pipeline.tracking import PLOTTED, EpochDVCLiveCallback

LIVE_CURVES = ("Validation accuracy by epoch", "Validation cross-entropy by epoch",
               "Training loss by epoch (for the distilled student, its distillation objective)")
CONFUSION = "Confusions of the distilled student (test, share of each actual label)"
F1 = "Per-class F1 on test, distilled student vs teacher (one dot per label)"
GRID = "Distilled student test accuracy over alpha and temperature (python -m pipeline.compare)"
FIGURES = [f"reports/plots/{name}.png" for name in
           ("accuracy_vs_latency", "reliability", "top_confusions", "per_class_f1")]


@pytest.fixture(scope="module")
def shown() -> dict:
    out = subprocess.run([sys.executable, "-m", "dvc", "plots", "show", "--json"], cwd=ROOT,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_every_plot_is_shown_once_and_only_the_declared_ones(shown):
    assert shown.get("errors") is None
    plots = shown["data"]
    assert list(plots) == [*LIVE_CURVES, CONFUSION, F1, GRID, *FIGURES]
    assert all(len(entries) == 1 for entries in plots.values())
    assert [plots[f][0]["type"] for f in FIGURES] == ["image"] * 4


def test_every_plot_renders_in_the_html_page(tmp_path):
    """DVC writes each plot's title, as the element id, into a single-quoted JavaScript string
    (`vegaEmbed('#<id>', spec)`): a quote in a title breaks that line and the plot never shows."""
    subprocess.run([sys.executable, "-m", "dvc", "plots", "show", "-o", str(tmp_path)], cwd=ROOT,
                   capture_output=True, text=True, check=True)
    page = (tmp_path / "index.html").read_text()
    ids = re.findall(r"vegaEmbed\('#(.*?)', spec", page)
    assert len(ids) == len(LIVE_CURVES) + 3  # the curves, confusion, F1 scatter, grid
    assert not [i for i in ids if "'" in i or '"' in i or "\\" in i]


def test_training_curves_compare_the_three_models_by_epoch(shown):
    for title in LIVE_CURVES:
        spec = shown["data"][title][0]["content"]
        files = {row["filename"] for row in spec["data"]["values"]}
        assert {f.split("/")[0] for f in files} == {"teacher", "baseline", "distill"}
        assert spec["encoding"]["x"]["title"] == "epoch"
        # One colour per model, named in the legend; revisions differ by dash.
        assert spec["encoding"]["color"]["field"] == "filename"
        assert spec["encoding"]["strokeDash"] == {"field": "rev", "type": "nominal"}


def test_the_confusion_matrix_is_a_confusion_plot(shown):
    spec = json.dumps(shown["data"][CONFUSION][0]["content"])
    assert '"rect"' in spec and '"actual"' in spec and '"predicted"' in spec
    # Each row as shares of its actual label, so the out-of-scope row's large count does not
    # set the colour scale for every other intent.
    assert '"joinaggregate": [{"op": "sum", "field": "xy_count", "as": "sum_y"}], "groupby": ["actual"]' in spec


def test_the_per_class_f1_scatter_is_not_squashed_into_a_corner(shown):
    spec = shown["data"][F1][0]["content"]
    points = spec["layer"][1]["encoding"]
    # Axes from the lowest score, padded so that a label at F1 = 1.0 is drawn whole.
    assert points["x"]["scale"] == points["y"]["scale"] == {"zero": False, "padding": 8}
    assert {"field": "label", "type": "nominal"} in points["tooltip"]
    assert spec["layer"][0]["mark"]["type"] == "rule"  # the student = teacher diagonal


def test_the_alpha_temperature_grid_is_a_heatmap(shown):
    spec = shown["data"][GRID][0]["content"]
    assert spec["encoding"]["x"]["field"] == "alpha"
    assert spec["encoding"]["y"]["field"] == "temperature"
    assert spec["layer"][0]["mark"]["type"] == "rect"
    assert len(spec["data"]["values"]) == 9  # the committed 3 x 3 grid


def test_dvclive_writes_only_the_curves_users_read(tmp_path):
    live = Live(dir=str(tmp_path), dvcyaml=False, save_dvc_exp=False)
    callback = EpochDVCLiveCallback(live=live)
    state = SimpleNamespace(epoch=1.0, is_world_process_zero=True)
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none")
    for logs in ({"loss": 0.5, "grad_norm": 1.0, "learning_rate": 1e-4, "epoch": 1.0},
                 {"eval_loss": 0.4, "eval_accuracy": 0.9, "eval_runtime": 1.2,
                  "eval_samples_per_second": 100.0, "epoch": 1.0},
                 {"train_runtime": 9.0, "train_loss": 0.6, "total_flos": 1e9, "epoch": 1.0}):
        callback.on_log(args, state, None, logs=logs)
    live.end()
    written = {p.relative_to(tmp_path / "plots/metrics").as_posix()
               for p in (tmp_path / "plots/metrics").rglob("*.tsv")}
    assert written == {"loss.tsv", "eval/loss.tsv", "eval/accuracy.tsv"}
    assert set(PLOTTED) >= {"loss", "eval_loss", "eval_accuracy"}
