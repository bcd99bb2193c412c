"""pipeline.compare on the JSON that `dvc exp show --json` prints (DVC 3.x layout)."""

import copy

import pytest

from pipeline.compare import experiments, write_report


def node(name, alpha, temperature, student_acc, experiments=None):
    metrics = {
        "teacher": {"accuracy": 0.95},
        "baseline": {"accuracy": 0.90, "macro_f1": 0.89},
        "student": {"accuracy": student_acc, "macro_f1": student_acc - 0.01,
                    "in_scope_accuracy": student_acc + 0.01, "oos_recall": 0.8, "ece": 0.05},
        "student_vs_teacher": {"agreement": 0.93, "accuracy_ratio": student_acc / 0.95},
    }
    params = {"alpha": alpha, "temperature": temperature,
              "student": {"train": {"learning_rate": 2e-4, "epochs": 8}}}
    return {"rev": name, "name": name, "error": None, "experiments": experiments,
            "data": {"rev": name, "params": {"params.yaml": {"data": params}},
                     "metrics": {"reports/metrics.json": {"data": metrics}}}}


def queued(name, alpha, temperature, student_acc):
    return {"revs": [node(name, alpha, temperature, student_acc)], "name": name,
            "executor": {"state": "success"}}


@pytest.fixture
def show():
    broken = queued("exp-failed", 0.9, 9.0, 0.0)
    del broken["revs"][0]["data"]["metrics"]  # a failed experiment has no metrics
    return [
        node("workspace", 0.5, 4.0, 0.91),
        node("main", 0.5, 4.0, 0.91, experiments=[
            queued("exp-low", 0.2, 2.0, 0.88), queued("exp-best", 0.8, 8.0, 0.93), broken,
        ]),
    ]


def test_rows_are_every_distinct_run_with_metrics_best_first(show):
    rows = experiments(show)
    # The workspace repeats its commit and is listed once, under the commit's name.
    assert [r["experiment"] for r in rows] == ["exp-best", "main", "exp-low"]
    assert rows[0]["alpha"] == 0.8 and rows[0]["temperature"] == 8.0
    assert rows[0]["student acc"] == 0.93 and rows[0]["teacher acc"] == 0.95


def test_report_has_the_table_and_the_plot(show, tmp_path):
    rows = experiments(show)
    out, figure = tmp_path / "compare.md", tmp_path / "compare.png"
    write_report(rows, out, figure)
    text = out.read_text()
    assert "| exp-best | 0.8 | 8 |" in text and "0.9300" in text
    assert text.index("exp-best") < text.index("exp-low")
    assert "](compare.png)" in text
    assert figure.stat().st_size > 10_000


def test_a_changed_metric_changes_the_report(show, tmp_path):
    changed = copy.deepcopy(show)
    changed[1]["experiments"][0]["revs"][0]["data"]["metrics"]["reports/metrics.json"]["data"][
        "student"]["accuracy"] = 0.97
    rows = experiments(changed)
    assert rows[0]["experiment"] == "exp-low" and rows[0]["student acc"] == 0.97


def with_seed(name, seed, student_acc, baseline_acc):
    run = queued(name, 0.1, 8.0, student_acc)
    data = run["revs"][0]["data"]
    data["params"]["params.yaml"]["data"]["seed"] = seed
    data["metrics"]["reports/metrics.json"]["data"]["baseline"]["accuracy"] = baseline_acc
    return run


def test_runs_that_differ_only_in_seed_get_mean_and_spread(tmp_path):
    show = [node("main", 0.5, 4.0, 0.91, experiments=[
        with_seed("s1", 1, 0.98, 0.97), with_seed("s2", 2, 0.96, 0.965), with_seed("s3", 3, 0.97, 0.96),
    ])]
    rows = experiments(show)
    write_report(rows, tmp_path / "compare.md", tmp_path / "compare.png")
    text = (tmp_path / "compare.md").read_text()
    assert "## Across seeds" in text
    line = next(li for li in text.splitlines() if li.startswith("| 0.1 | 8 | 1, 2, 3 |"))
    assert "0.9700 ± 0.0100 (0.9600–0.9800)" in line  # student
    assert "2 of 3" in line
    assert line.count("|") == 9  # one row per seed group, eight columns
