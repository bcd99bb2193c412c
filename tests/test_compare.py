"""pipeline.compare on the rows `dvc.api.exp_show()` returns, built here the way DVC builds them
(checked against a real exp_show() in a scratch git + DVC repo at the end), and end to end."""

import inspect
import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from hashlib import md5
from pathlib import Path

import pytest
import yaml
from dvc.utils.flatten import flatten

from conftest import ROOT, run_checked
from pipeline import compare
from pipeline.compare import DEFAULT_OUT, distinct_runs, write_report
from pipeline.errors import UserError
from pipeline.registry import ROLES

INFO = ["Experiment", "rev", "typ", "Created", "parent", "State", "Executor"]

PARAMS = {
    "seed": 42, "alpha": 0.5, "temperature": 4.0, "task": "text-classification",
    "data": {"source": "data/demo", "max_length": 64, "oos_label": "oos"},
    "teacher": {"model": "minilm-l6", "finetune": True, "train": {"epochs": 8}},
    "student": {"init": "teacher_layers", "layers": [0, 2, 4], "model": None,
                "train": {"epochs": 8, "learning_rate": 1e-4}},
}


def reports(student, baseline=0.90, teacher=0.95, latency=11.0, oos=True, validation=None,
            p=None):
    """A run's metrics files: reports/metrics.json as the evaluate stage writes it, the
    training stages' reports (their `validation` and `timing` keys collide between files) and
    reports/data.json. The scratch repo's stage writes them with this very function."""
    def role(accuracy, parameters):
        scores = {"accuracy": accuracy, "macro_f1": round(accuracy - 0.01, 4), "ece": 0.05}
        if oos:
            scores.update(in_scope_accuracy=round(accuracy + 0.01, 4), oos_recall=0.8)
        return {**scores, "parameters": parameters, "size_mb": parameters / 262144}

    roles = ("teacher", "baseline", "student")
    speed = {name: {"latency_ms_median": latency, "throughput_per_s": 1000 / latency}
             for name in roles}
    metrics = {
        "teacher": role(teacher, 22_000_000), "baseline": role(baseline, 17_000_000),
        "student": {**role(student, 17_000_000),
                    **({"validation_accuracy": validation} if validation is not None else {})},
        "student_vs_teacher": {"agreement": 0.93, "accuracy_ratio": student / teacher,
                               "parameter_ratio": 17 / 22, "size_ratio": 17 / 22},
        **({"student_vs_baseline": {"accuracy_gain": student - baseline, "mcnemar_p": p}}
           if p is not None else {}),
        "numerics": "fp32",
        "speed": {"device": "cpu (x86_64, 2 threads)", **speed, "student_speedup": 1.8},
    }
    trained = {f"reports/{name}.json": {"validation": {"accuracy": student, "loss": 0.3},
                                        "timing": {"train_seconds": 60 + latency}}
               for name in roles}
    data = {"rows": {"train": 1100, "test": 600}, "num_labels": 21}
    return {"reports/data.json": data, **trained, "reports/metrics.json": metrics}


def files(student, *, seed=42, alpha=0.5, temperature=4.0, lr=1e-4, student_seed=None,
          **metrics):
    """A run's params and metrics files."""
    params = {**PARAMS, "seed": seed, "alpha": alpha, "temperature": temperature,
              "student": {**PARAMS["student"], "train": {"epochs": 8, "learning_rate": lr}}}
    if student_seed is not None:
        params["student"]["seed"] = student_seed
    return {**reports(student, **metrics), "params.yaml": params}


def cell(value):
    """A value as exp_show() returns it: rendered as text, read back as a number if it is one."""
    try:
        return float(str(value))
    except ValueError:
        return str(value)


def show(*runs):
    """The rows of dvc.api.exp_show() for these runs: every row has every column, a key that
    two files share is named "file:key", a key a file lacks in one run reads "None", a run
    without data (queued, failed) has None everywhere."""
    keys: dict[str, dict] = {}
    for run in runs:
        for file, data in run["files"].items():
            keys.setdefault(file, {}).update(dict.fromkeys(flatten(data)))
    count = Counter([*INFO, *(k for file in keys.values() for k in file)])
    column = {(file, k): k if count[k] == 1 else f"{file}:{k}"
              for file, names in keys.items() for k in names}
    deps = {name: None for run in runs for name in run["deps"]}
    rows = []
    for run in runs:
        row = dict.fromkeys([*INFO, *column.values(), *deps])
        row.update(run["info"])
        for file, data in run["files"].items():
            flat = flatten(data)
            row.update({column[file, k]: cell(flat.get(k)) for k in keys[file]})
        rows.append({**row, **run["deps"]})
    return rows


def result(rev, experiment=None, student=0.91, state=None, code="main", **kwargs):
    data = files(student, **kwargs) if student is not None else {}
    if state == "Queued":
        data = {"params.yaml": files(0.0, **kwargs)["params.yaml"]}
    # The trained model's hash changes with every training run, equal metrics or not.
    model = md5(repr((rev, sorted(kwargs.items()))).encode()).hexdigest() + ".dir"
    return {"info": {"Experiment": experiment, "rev": rev, "typ": "baseline",
                     "Created": None if rev == "workspace" else "Nov 27, 2026",
                     "parent": None, "State": state, "Executor": None},
            "files": data,
            # The stages' code: a commit's, which its experiments and the workspace run too.
            "deps": {"stages/distill.py": md5(code.encode()).hexdigest(),
                     "models/trained/student": model} if data else {}}


def workspace(**kwargs):
    return result("workspace", **kwargs)


def experiment(name, **kwargs):
    return result(md5(name.encode()).hexdigest()[:7], experiment=name, **kwargs)


def commit(rev, *experiments, code=None, **kwargs):
    """A commit's row, then its experiments' (DVC marks the last one branch_base). Each commit
    has code of its own unless `code` names another's."""
    code = code or rev
    for i, exp in enumerate(experiments):
        exp["info"]["typ"] = "branch_base" if i == len(experiments) - 1 else "branch_commit"
        if exp["deps"]:
            exp["deps"]["stages/distill.py"] = md5(code.encode()).hexdigest()
    return [result(rev, code=code, **kwargs), *experiments]


@pytest.fixture
def heatmaps(monkeypatch):
    """What write_report passes to plots.grid_heatmap, which still draws the figure."""
    calls = []
    draw = compare.plots.grid_heatmap

    def record(values, path, title, label, reference):
        calls.append({"values": values, "title": title, "reference": reference})
        draw(values, path, title, label, reference)

    monkeypatch.setattr(compare.plots, "grid_heatmap", record)
    return calls


@pytest.fixture
def seed_figures(monkeypatch):
    """What write_report passes to plots.seed_pairs, which still draws the figure."""
    calls = []
    draw = compare.plots.seed_pairs

    def record(seeds, baseline, student, reference, path, title):
        calls.append({"seeds": seeds, "baseline": baseline, "student": student,
                      "reference": reference, "title": title})
        draw(seeds, baseline, student, reference, path, title)

    monkeypatch.setattr(compare.plots, "seed_pairs", record)
    return calls


def cells(tmp_path):
    """The figure's cells, as the csv beside it (the DVC plot) has them."""
    lines = (tmp_path / "compare.csv").read_text().splitlines()
    assert lines[0] == "alpha,temperature,student_accuracy,runs"
    return [tuple(float(v) for v in line.split(",")) for line in lines[1:]]


def report(rows, tmp_path):
    write_report(distinct_runs(rows), tmp_path / "compare.md", tmp_path / "compare.png")
    return (tmp_path / "compare.md").read_text()


@pytest.fixture
def grid():
    return show(
        workspace(student=0.91),
        *commit("main",
                experiment("exp-low", alpha=0.2, temperature=2.0, student=0.88),
                experiment("exp-best", alpha=0.8, temperature=8.0, student=0.93),
                experiment("exp-queued", alpha=0.9, temperature=9.0, state="Queued"),
                experiment("exp-failed", student=None, state="Failed"),
                student=0.91),
    )


def test_rows_are_every_distinct_run_with_metrics_best_first(grid):
    table = distinct_runs(grid)
    # The workspace repeats its commit; queued and failed experiments have no metrics.
    assert list(table["experiment"]) == ["exp-best", "main", "exp-low"]
    best = table.iloc[0]
    assert (best["alpha"], best["temperature"], best["seed"]) == (0.8, 8.0, 42)
    assert best["student.accuracy"] == 0.93 and best["teacher.accuracy"] == 0.95
    assert set(table["commit"]) == {"main"}
    # Only params.yaml and metrics.json describe a run (not the other reports, not the hashes
    # of dependencies), and timings do not.
    metrics = flatten(reports(0.9)["reports/metrics.json"])
    assert set(table.columns) == {"experiment", "commit", *flatten(PARAMS),
                                  *(k for k in metrics if not k.startswith("speed."))}


def test_results_equal_but_for_timings_are_one_run_named_by_commit_then_workspace(tmp_path):
    rows = show(
        workspace(alpha=0.8, student=0.93, latency=12.5),
        *commit("main",
                experiment("shill-obit", student=0.91, latency=9.0),
                experiment("buxom-snap", alpha=0.8, student=0.93, latency=10.0),
                student=0.91, latency=11.0),
    )
    table = distinct_runs(rows)
    assert sorted(table["experiment"]) == ["main", "workspace"]
    text = report(rows, tmp_path)
    assert "shill-obit" not in text and "buxom-snap" not in text


def test_a_running_experiment_is_not_a_result_yet():
    # While it runs, exp_show gives an experiment the metrics of the commit it started from.
    running = experiment("gross-shah", alpha=0.2, student=0.91, state="Running")
    done = experiment("shyer-horn", alpha=0.2, temperature=2.0, student=0.90, state="Success")
    rows = show(*commit("main", running, done, student=0.91))
    assert list(distinct_runs(rows)["experiment"]) == ["main", "shyer-horn"]


def test_a_changed_metric_is_a_different_run(tmp_path):
    rows = show(*commit("main", experiment("shill-obit", student=0.97), student=0.91))
    assert list(distinct_runs(rows)["experiment"]) == ["shill-obit", "main"]


def test_report_has_the_table_best_first_and_the_heatmap(grid, tmp_path, heatmaps):
    text = report(grid, tmp_path)
    assert re.search(r"\| exp-best +\| 0\.8 +\| 8 +\| 0\.9300 ", text)
    assert text.index("| exp-best ") < text.index("| main ") < text.index("| exp-low ")
    assert "](compare.png)" in text
    assert (tmp_path / "compare.png").stat().st_size > 10_000
    [plot] = heatmaps
    assert plot["values"] == {(0.8, 8.0): 0.93, (0.5, 4.0): 0.91, (0.2, 2.0): 0.88}
    assert plot["title"] == "Distilled student test accuracy"
    assert plot["reference"] == {"teacher acc": 0.95, "baseline student acc": 0.90}


def test_metric_columns_come_from_the_role_registry_and_unknown_ones_are_left_out(tmp_path):
    rows = show(*commit("main", experiment("exp-a", alpha=0.2, student=0.9, oos=False),
                        student=0.91, oos=False))
    header = report(rows, tmp_path).splitlines()[4]
    for role in ROLES.values():
        assert f"| {role.title} acc " in header
    assert "student macro-F1" in header and "agreement" in header
    assert "oos recall" not in header and "in-scope acc" not in header


def test_params_shown_are_alpha_temperature_and_those_that_differ(tmp_path):
    rows = show(*commit("main", experiment("fast", lr=5e-4, student=0.92), student=0.91))
    header = report(rows, tmp_path).splitlines()[4]
    columns = [c.strip() for c in header.strip("|").split("|")]
    assert columns[:4] == ["experiment", "alpha", "temperature", "student.train.learning_rate"]
    assert "seed" not in columns and "student.train.epochs" not in columns
    assert "| fast " in report(rows, tmp_path) and "| 0.0005 " in report(rows, tmp_path)


def test_runs_that_differ_only_in_seed_get_mean_and_spread(tmp_path, heatmaps):
    rows = show(*commit("main",
                        experiment("s1", seed=1, alpha=0.1, temperature=8.0, student=0.98,
                                   baseline=0.97),
                        experiment("s2", seed=2, alpha=0.1, temperature=8.0, student=0.96,
                                   baseline=0.965),
                        experiment("s3", seed=3, alpha=0.1, temperature=8.0, student=0.97,
                                   baseline=0.96),
                        student=0.91))
    text = report(rows, tmp_path)
    assert "## Across seeds" in text
    line = next(li for li in text.splitlines() if re.match(r"\| 0\.1 +\| 8 +\| 1, 2, 3 ", li))
    assert "0.9700 ± 0.0100 (0.9600–0.9800)" in line  # student
    assert "2 of 3" in line
    assert line.count("|") == 9  # one row per setting, eight columns
    assert heatmaps[0]["title"] == \
        "Distilled student test accuracy (mean over seeds where a setting has several)"
    assert heatmaps[0]["values"] == {(0.1, 8.0): pytest.approx(0.97), (0.5, 4.0): 0.91}


def test_one_settings_seeds_are_drawn_seed_by_seed(tmp_path, heatmaps, seed_figures):
    # A one-cell heatmap would hide what seeds show: each seed's lead over the baseline.
    rows = show(*commit("main",
                        experiment("s2", student_seed=2, student=0.93, baseline=0.92),
                        experiment("s1", student_seed=1, student=0.94, baseline=0.91),
                        student_seed=42, student=0.92, baseline=0.925, teacher=0.95))
    report(rows, tmp_path)
    assert not heatmaps
    [plot] = seed_figures
    assert plot["seeds"] == ["1", "2", "42"]  # in seed order, each with its own runs' figures
    assert plot["student"] == pytest.approx([0.94, 0.93, 0.92])
    assert plot["baseline"] == pytest.approx([0.91, 0.92, 0.925])
    assert plot["reference"] == {"teacher": pytest.approx(0.95)}
    assert plot["title"] == "Test accuracy per student.seed"
    assert (tmp_path / "compare.png").stat().st_size > 10_000
    assert cells(tmp_path) == [(0.5, 4.0, pytest.approx(0.93), 3)]


def test_runs_are_ranked_by_validation_not_test(tmp_path):
    rows = show(*commit("main",
                        experiment("test-best", alpha=0.2, student=0.95, validation=0.90),
                        experiment("val-best", alpha=0.8, student=0.91, validation=0.93),
                        student=0.92, validation=0.91))
    assert list(distinct_runs(rows)["experiment"]) == ["val-best", "main", "test-best"]
    header = report(rows, tmp_path).splitlines()[4]
    columns = [c.strip() for c in header.strip("|").split("|")]
    assert columns[3:5] == ["student val acc", "distilled student acc"]


def test_student_seeds_get_mean_spread_and_the_paired_test_per_seed(tmp_path, heatmaps):
    rows = show(*commit("main",
                        experiment("s1", student_seed=1, student=0.93, baseline=0.91,
                                   validation=0.94, p=0.01),
                        experiment("s2", student_seed=2, student=0.92, baseline=0.91,
                                   validation=0.93, p=0.2),
                        experiment("s3", student_seed=3, student=0.94, baseline=0.90,
                                   validation=0.95, p=0.001),
                        student=0.91, validation=0.92, student_seed=42, p=0.5, baseline=0.92))
    text = report(rows, tmp_path)
    seeds = text[text.index("## Across seeds"):]
    line = next(li for li in seeds.splitlines() if "student.seed 1, 2, 3, 42" in li)
    assert "0.9250 ± 0.0129" in line  # the student over four seeds
    assert "3 of 4" in line  # beat the baseline
    assert "2 of 4" in line  # significantly: p < 0.05 and ahead
    assert "| 0.01, 0.2, 0.001, 0.5 |" in line  # in seed order


def test_no_seed_table_when_no_setting_has_two_student_seeds(tmp_path, heatmaps):
    rows = show(*commit("main", experiment("low", alpha=0.2, student_seed=1, student=0.88),
                        student_seed=1, student=0.91))
    assert "## Across seeds" not in report(rows, tmp_path)


def test_no_seed_table_or_mean_over_seeds_without_two_seeds(tmp_path, heatmaps):
    # A rerun of the same setting with the same seed (equal but for its timings) is no seed.
    rows = show(*commit("main", experiment("shill-obit", latency=9.0),
                        experiment("exp-low", alpha=0.2, student=0.88), latency=11.0))
    text = report(rows, tmp_path)
    assert "## Across seeds" not in text and "over seeds" not in heatmaps[0]["title"]


def test_runs_of_different_commits_are_never_averaged(tmp_path, heatmaps, seed_figures):
    # exp_show(num=-1): the workspace, HEAD and its experiments, then the earlier commits.
    rows = show(
        workspace(seed=1, student=0.90),
        *commit("main", experiment("new-seed-1", seed=1, student=0.90), seed=2, student=0.92),
        *commit("v1", experiment("old-seed-3", seed=3, student=0.80), seed=4, student=0.82),
        *commit("a1b2c3d", seed=5, student=0.70),
    )
    text = report(rows, tmp_path)
    seeds = text[text.index("## Across seeds"):]
    assert re.search(r"\| main +\| 0\.5 +\| 4 +\| 1, 2 +\|", seeds)
    assert re.search(r"\| v1 +\| 0\.5 +\| 4 +\| 3, 4 +\|", seeds)
    assert "0.9100 ± 0.0141" in seeds and "0.8100 ± 0.0141" in seeds
    assert "a1b2c3d" not in seeds  # seed 5 of the same setting, but not of the same code
    # One setting's seeds: each seed's baseline and student, main's runs only.
    assert not heatmaps
    [plot] = seed_figures
    assert plot["seeds"] == ["1", "2"] and plot["student"] == pytest.approx([0.90, 0.92])
    assert plot["title"] == "Test accuracy per seed, commit main"
    assert cells(tmp_path) == [(0.5, 4.0, pytest.approx(0.91), 2)]
    assert "The figure shows the runs of the code of commit `main` only." in text


def test_a_commit_that_changes_no_stage_code_keeps_its_experiments_comparable(tmp_path, heatmaps):
    # A grid queued on v1, then a commit of documentation only: the grid still counts as the
    # current code's, named by the newest commit that has that code.
    rows = show(*commit("main", seed=1, student=0.90, code="v1"),
                *commit("v1", experiment("grid-1", seed=2, student=0.92),
                        experiment("grid-2", seed=3, student=0.94), seed=1, student=0.90))
    table = distinct_runs(rows)
    assert list(table["experiment"]) == ["grid-2", "grid-1", "main"]
    assert set(table["commit"]) == {"main"}
    report(rows, tmp_path)
    assert cells(tmp_path) == [(0.5, 4.0, pytest.approx(0.92), 3)]


def test_same_seed_in_two_commits_is_two_runs_not_a_seed_group(tmp_path, heatmaps):
    rows = show(*commit("main", student=0.92), *commit("v1", student=0.82))
    text = report(rows, tmp_path)
    assert "## Across seeds" not in text
    assert heatmaps[0]["values"] == {(0.5, 4.0): 0.92}
    assert "over" not in heatmaps[0]["title"]


def test_no_run_with_metrics_is_a_user_error():
    rows = show(workspace(student=None), *commit("main", experiment("q", state="Queued"),
                                                 student=None))
    with pytest.raises(UserError, match="no experiment with reports/metrics.json"):
        distinct_runs(rows)


def test_default_output_is_git_ignored_and_not_the_committed_report():
    assert DEFAULT_OUT != Path("reports/compare.md") and DEFAULT_OUT.suffix == ".md"
    for path in (DEFAULT_OUT, DEFAULT_OUT.with_suffix(".png")):
        ignored = subprocess.run(["git", "check-ignore", "-q", str(path)], cwd=ROOT)
        assert ignored.returncode == 0, f"{path} is not git-ignored"


# End to end: a scratch git + DVC repo whose one stage writes the metrics files from params.

STAGE = """
import json
from pathlib import Path

import yaml

{reports}

params = yaml.safe_load(Path("params.yaml").read_text())
student = round(0.9 + 0.02 * params["alpha"] - 0.001 * params["temperature"]
                + 0.001 * (params["seed"] % 10) + {offset}, 4)
Path("reports").mkdir(exist_ok=True)
for path, data in reports(student).items():
    Path(path).write_text(json.dumps(data))
"""

DVC_YAML = {"stages": {"evaluate": {
    "cmd": f"{sys.executable} stage.py", "deps": ["stage.py"],
    "params": ["seed", "alpha", "temperature", "student"],
    # As the project's dvc.yaml: metrics.json is a plain output, which exp_show() does not list.
    "outs": [{"reports/metrics.json": {"cache": False}}],
    "metrics": [{f"reports/{name}.json": {"cache": False}}
                for name in ("data", "teacher", "baseline", "student")],
}}}


def write_stage(repo, offset):
    (repo / "stage.py").write_text(
        STAGE.format(reports=inspect.getsource(reports), offset=offset))
    (repo / "params.yaml").write_text(yaml.safe_dump(PARAMS, sort_keys=False))


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """Commit v1 with experiment old-seed (seed 7); commit main (other code) with experiments
    new-seed (seed 7) and low-alpha, whose result the workspace holds."""
    repo = tmp_path_factory.mktemp("compare")
    dvc = [sys.executable, "-m", "dvc"]
    (repo / "dvc.yaml").write_text(yaml.safe_dump(DVC_YAML))
    write_stage(repo, offset=0.0)
    for cmd in (["git", "init", "-q", "-b", "main"], ["git", "config", "user.email", "ci@x"],
                ["git", "config", "user.name", "ci"], [*dvc, "init", "-q"], [*dvc, "repro"],
                ["git", "add", "-A"], ["git", "commit", "-qm", "v1"], ["git", "tag", "v1"],
                [*dvc, "exp", "run", "-S", "seed=7", "-n", "old-seed"]):
        run_checked(cmd, repo)
    write_stage(repo, offset=0.01)
    for cmd in ([*dvc, "repro"], ["git", "commit", "-qam", "new code"],
                [*dvc, "exp", "run", "-S", "seed=7", "-n", "new-seed"],
                [*dvc, "exp", "run", "-S", "seed=42", "-S", "alpha=0.2", "-n", "low-alpha"]):
        run_checked(cmd, repo)
    return repo


def run_compare(cwd, *args):
    """`python -m pipeline.compare` of this checkout, run in `cwd`."""
    return subprocess.run([sys.executable, "-m", "pipeline.compare", *args], cwd=cwd,
                          capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def compare_in(repo, *args):
    done = run_compare(repo, *args)
    assert done.returncode == 0, done.stderr


def test_the_fixture_rows_are_what_exp_show_returns(repo, monkeypatch):
    monkeypatch.chdir(repo)
    [real, *_] = compare.exp_show(1)  # dvc.api.exp_show() with metrics.json's keys
    [built] = show(workspace(alpha=0.2, student=0.0))
    assert real["rev"] == "workspace" and real["typ"] == "baseline"
    real_columns = {c for c in real if c != "stage.py"}  # the dependency's hash
    assert real_columns == {c for c in built if c not in ("stages/distill.py",
                                                          "models/trained/student")}
    for name in flatten(PARAMS):
        assert real[name] == built[name], name  # "None", "[0, 2, 4]", True as "True", 42.0


def test_compare_end_to_end(repo, tmp_path):
    out, figure = tmp_path / "report" / "compare.md", tmp_path / "figures" / "compare.png"
    compare_in(repo, "--out", str(out), "--figure", str(figure))
    text = out.read_text()
    table = text[:text.index("## Across seeds")]
    # Best first; low-alpha's result is the workspace's, and named so.
    assert re.findall(r"^\| ([\w-]+) ", table, re.MULTILINE)[1:] == ["new-seed", "main",
                                                                     "workspace"]
    # The default: HEAD's experiments and the workspace, not those of earlier commits.
    assert "old-seed" not in text and "v1" not in text
    assert re.search(r"\| 0\.5 +\| 4 +\| 7, 42 +\|", text[text.index("## Across seeds"):])
    assert "](../figures/compare.png)" in text
    assert figure.stat().st_size > 10_000


def test_all_commits_names_earlier_commits_briefly_and_keeps_them_apart(repo, tmp_path):
    out = tmp_path / "compare.md"
    compare_in(repo, "--all-commits", "--out", str(out), "--figure", str(tmp_path / "c.png"))
    text = out.read_text()
    assert "| old-seed " in text and "| v1 " in text
    assert not re.search(r"\b[0-9a-f]{40}\b", text)
    seeds = text[text.index("## Across seeds"):].splitlines()
    groups = [li for li in seeds if re.match(r"\| (main|v1) +\| 0\.5 +\| 4 +\| 7, 42 ", li)]
    assert len(groups) == 2


def test_outside_a_repository_is_one_line_error(tmp_path):
    done = run_compare(tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith("error: `dvc exp show` failed: you are not inside of a DVC")
    assert "Traceback" not in done.stderr


def test_default_output_leaves_the_committed_report_alone(repo):
    compare_in(repo)
    assert (repo / DEFAULT_OUT).stat().st_size > 0
    assert (repo / DEFAULT_OUT.with_suffix(".png")).stat().st_size > 10_000
    assert not (repo / "reports/compare.md").exists()


@pytest.mark.parametrize("args,num", [([], 1), (["-n", "3"], 3), (["--all-commits"], -1)])
def test_how_many_commits_are_read(monkeypatch, tmp_path, args, num):
    from unittest import mock

    from pipeline import compare

    rows = show(workspace(), *commit("main"))
    monkeypatch.setattr("sys.argv", ["compare", *args, "--out", str(tmp_path / "c.md"),
                                     "--figure", str(tmp_path / "c.png")])
    with mock.patch.object(compare.dvc.api, "exp_show", return_value=rows) as exp_show, \
            mock.patch.object(compare.Repo, "find_root", return_value="."), \
            mock.patch.object(compare, "_with_metrics_file", lambda root, rows: rows):
        compare.main()
    assert exp_show.call_args.kwargs["num"] == num


def write_record(folder, code="main", **kwargs):
    """A run record as the project commits them: the run's params.yaml, metrics.json and
    dvc.lock in one folder."""
    run = files(kwargs.pop("student", 0.91), **kwargs)
    folder.mkdir(parents=True)
    (folder / "params.yaml").write_text(yaml.safe_dump(run["params.yaml"], sort_keys=False))
    (folder / "metrics.json").write_text(json.dumps(run["reports/metrics.json"]))
    lock = {"schema": "2.0", "stages": {"distill": {"cmd": "python -m stages.distill", "deps": [
        {"path": "stages/distill.py", "hash": "md5", "md5": md5(code.encode()).hexdigest()},
        {"path": "data/soft_targets", "hash": "md5", "md5": "0" * 32 + ".dir"}]}}}
    (folder / "dvc.lock").write_text(yaml.safe_dump(lock))
    return folder


def test_a_record_reads_as_its_run_does_in_exp_show(repo, tmp_path, monkeypatch):
    monkeypatch.chdir(repo)
    [workspace_row, *_] = compare.exp_show(1)
    record = tmp_path / "low-alpha"
    record.mkdir()
    for source in ("params.yaml", "reports/metrics.json", "dvc.lock"):
        shutil.copy(repo / source, record)
    [row] = compare.record_rows([record])
    for name in flatten(PARAMS):
        assert row[name] == workspace_row[name], name
    assert row["alpha"] == 0.2  # the experiment the workspace holds
    metrics = flatten(json.loads((record / "metrics.json").read_text()))
    assert {key: row[key] for key in metrics} == {key: workspace_row[key] for key in metrics}
    # The stages' code, as exp_show() names a dependency's column.
    assert row["stage.py"] == workspace_row["stage.py"]


def test_records_of_one_code_that_differ_in_student_seed_get_the_seed_table(tmp_path, heatmaps):
    folders = [write_record(tmp_path / f"seed-{s}", student_seed=s, student=student,
                            baseline=0.90, validation=0.93, p=p)
               for s, student, p in ((1, 0.93, 0.01), (2, 0.91, 0.3))]
    out = tmp_path / "out" / "seeds.md"
    write_report(distinct_runs(compare.record_rows(folders)), out, tmp_path / "seeds.png",
                 records=True)
    text = out.read_text()
    assert text.startswith("# Experiment comparison\n\n2 run records, all of one version of "
                           "the code")
    line = next(li for li in text.splitlines() if "student.seed 1, 2" in li)
    assert "0.9200 ± 0.0141 (0.9100–0.9300)" in line and re.search(r"\| 0\.01, 0\.3 +\|$", line)


def test_records_of_different_code_are_never_averaged(tmp_path, heatmaps):
    folders = [write_record(tmp_path / "new-1", code="new", student_seed=1, student=0.93),
               write_record(tmp_path / "old-2", code="old", student_seed=2, student=0.91)]
    runs = distinct_runs(compare.record_rows(folders))
    assert list(runs["commit"]) == ["new-1", "old-2"]
    write_report(runs, tmp_path / "c.md", tmp_path / "c.png", records=True)
    text = (tmp_path / "c.md").read_text()
    assert "2 run records of 2 versions of the code, each named by the first record" in text
    assert "## Across seeds" not in text
    assert "The figure shows the runs of the code of record `new-1` only." in text


def test_runs_end_to_end_outside_a_repository(tmp_path):
    folders = [str(write_record(tmp_path / f"s{s}", student_seed=s, p=0.2)) for s in (1, 2)]
    out = tmp_path / "seeds.md"
    done = run_compare(tmp_path, "--runs", *folders, "--out", str(out),
                       "--figure", str(tmp_path / "seeds.png"))
    assert done.returncode == 0, done.stderr
    assert "## Across seeds" in out.read_text()


def test_a_folder_that_is_not_a_record_is_one_line_error(tmp_path):
    write_record(tmp_path / "run")
    (tmp_path / "run" / "dvc.lock").unlink()
    done = run_compare(tmp_path, "--runs", str(tmp_path / "run"))
    assert done.returncode == 2
    assert done.stderr.strip() == (f"error: {tmp_path / 'run'} is not a run record: it lacks "
                                   "dvc.lock (a record is a run's params.yaml, metrics.json, "
                                   "dvc.lock in one folder)")
