"""Compare DVC experiments: a table of params and key metrics, best first, a plot of the
distilled student's accuracy over alpha and temperature (or, for one setting's seeds, of each
seed's baseline and distilled student), and the mean and spread over seeds of
runs that differ only in their seeds, with the paired test of distilled student against baseline.
Runs are ranked by the distilled student's validation accuracy, never by test.

    dvc exp run --queue -S alpha=0.2,0.5,0.8 -S temperature=2,4,8
    dvc exp run --queue -S student.seed=1,2,3     # the students only; seed=1,2,3 also the teacher
    dvc queue start -j 1
    python -m pipeline.compare                  # reports/local/compare.md and compare.png
    python -m pipeline.compare --num 2          # HEAD and the commit before it, with their experiments
    python -m pipeline.compare --all-commits    # with the experiments of every earlier commit
    python -m pipeline.compare --out reports/compare.md --figure reports/compare.png
    python -m pipeline.compare --runs reports/clinc150/runs/layers-1-3-5-seed-*   # run records
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import dvc.api
import pandas as pd
import yaml
from dvc.exceptions import DvcException
from dvc.repo import Repo
from dvc.utils.flatten import flatten
from pandas.api.typing import DataFrameGroupBy
from pydantic import BaseModel

from pipeline import plots
from pipeline.config import Params
from pipeline.errors import UserError, stage_main
from pipeline.inputs import read_json
from pipeline.outputs import write_text
from pipeline.paths import METRICS, PARAMS, REPORTS
from pipeline.registry import ROLES

log = logging.getLogger(__name__)

# Git-ignored: a comparison of one's own experiments must not overwrite the committed record.
DEFAULT_OUT = REPORTS / "local" / "compare.md"

EXPERIMENT, COMMIT = "experiment", "commit"
WORKSPACE = "workspace"
# The top-level seed (data splits, teacher) and the students' own.
SEEDS = ("seed", "student.seed")
GRID = ["alpha", "temperature"]
STUDENT = "student"
# What distillation has to beat: the seeds table counts the student's wins over it.
BASELINE = "baseline"

# exp_show() names a column "file:key" only when two files share the key; metrics.json's keys
# come unnamed (pipeline.compare.exp_show adds them). Only these two files describe a run here.
FILES = (str(PARAMS), str(METRICS))
# The blocks of metrics.json (pipeline.evaluation): one per model, the comparison, the
# numerics the models ran in, the timings.
METRIC_BLOCKS = (*ROLES, "student_vs_teacher", "student_vs_baseline", "numerics", "speed")
# Where the stages' code lives: its dependency hashes say which code a run ran.
CODE_FOLDERS = ("pipeline/", "stages/")
# Latency, throughput and the device differ on every run of the same model: not a result.
TIMINGS = "speed."
# exp_show() turns every value into text and back: a null param comes back as "None", a value
# from a file it could not read as "!".
UNKNOWN = {"None": None, "!": None}

ACCURACY = {role: f"{role}.accuracy" for role in ROLES}
# What runs are ranked by: chosen on validation, reported on test.
VALIDATION = "student.validation_accuracy"
P_VALUE = "student_vs_baseline.mcnemar_p"
THRESHOLDED = {"student.thresholded.in_scope_accuracy": "in-scope acc (threshold)",
               "student.thresholded.oos_recall": "oos recall (threshold)"}
STUDENT_COLUMNS = {
    P_VALUE: "p vs baseline",
    "student.macro_f1": "student macro-F1",
    "student.in_scope_accuracy": "in-scope acc",
    "student.oos_recall": "oos recall",
    "student.ece": "ECE",
    "student_vs_teacher.agreement": "agreement",
    "student_vs_teacher.accuracy_ratio": "student / teacher acc",
    **THRESHOLDED,
}
# The result first, then what it has to beat, then the reference.
METRIC_TITLES = {
    VALIDATION: "student val acc",
    **{ACCURACY[role]: f"{ROLES[role].title} acc" for role in reversed(ROLES)},
    **STUDENT_COLUMNS,
}


def _leaves(model: type[BaseModel], prefix: str = "") -> Iterator[str]:
    for name, field in model.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            yield from _leaves(field.annotation, f"{prefix}{name}.")
        else:
            yield prefix + name


# Flattened param names as exp_show() writes them ("student.train.epochs").
PARAM_NAMES = tuple(_leaves(Params))


def is_param(name: str) -> bool:
    """Whether a column of the comparison is a param (dict-valued params flatten further)."""
    return any(name == p or name.startswith(f"{p}.") for p in PARAM_NAMES)


def _is_metric(name: str) -> bool:
    return name.split(".")[0] in METRIC_BLOCKS and not is_param(name)


def _column_names(columns: pd.Index) -> dict[str, str]:
    """exp_show() column -> its params.yaml or metrics.json key; other columns are left out
    (other metrics files, the hashes of dependencies, DVC's own columns)."""
    names = {}
    for column in columns:
        file, _, key = column.rpartition(":")
        if (file in FILES or not file) and (is_param(key) or _is_metric(key)):
            names[column] = key
    return names


def _commits(table: pd.DataFrame) -> pd.Series:
    """The commit each row comes from: exp_show() lists each commit's experiments after it, and
    the workspace, listed first, holds the code of the next one."""
    revs = table["rev"].where(table["typ"] == "baseline")
    return revs.mask(revs == WORKSPACE).ffill().bfill()


def _code_versions(table: pd.DataFrame) -> pd.Categorical:
    """The code each row's stages ran, named by the newest commit that ran it, newest first.

    The code is the hashes of the stages' source files that dvc.lock records (exp_show() gives a
    column per dependency): runs of the same code compare whatever commits came between them
    (documentation, reports), and runs of different code never fall into one group.
    """
    commits = _commits(table)
    code = [c for c in table.columns if c.rpartition(":")[2].startswith(CODE_FOLDERS)]
    if code:
        version = pd.util.hash_pandas_object(table[code], index=False)
        # Rows come newest commit first, so a version's first row names its newest commit.
        commits = commits.groupby(version, sort=False).transform("first")
    return pd.Categorical(commits, categories=commits.unique(), ordered=True)


def _name_rank(table: pd.DataFrame) -> pd.Series:
    """Which name a result listed more than once keeps: a commit's, the workspace's, an
    experiment's."""
    commit = (table["typ"] == "baseline") & (table["rev"] != WORKSPACE)
    return (~commit).astype(int) + table["Experiment"].notna().astype(int)


def distinct_runs(rows: list[dict]) -> pd.DataFrame:
    """One row per distinct run with metrics, best distilled-student validation accuracy first
    (runs without it last, by test accuracy), from the rows of `dvc.api.exp_show()`: its name,
    its commit, its params and metrics."""
    table = pd.DataFrame(rows)
    names = _column_names(table.columns)
    data = table[list(names)].rename(columns=names).replace(UNKNOWN).infer_objects()
    metrics = [c for c in data if _is_metric(c)]
    data.insert(0, EXPERIMENT, table["Experiment"].fillna(table["rev"]))
    data.insert(1, COMMIT, _code_versions(table))
    # A queued or running experiment shows the metrics of the commit it started from; only a
    # finished one (or a commit, or the workspace: no state) has results of its own.
    finished = table["State"].isna() | (table["State"] == "Success")
    data = data[finished & data[metrics].notna().any(axis=1)]
    if data.empty or ACCURACY[STUDENT] not in data:
        raise UserError(f"no experiment with {METRICS} yet: run `dvc repro` or `dvc exp run` "
                        "first")
    # The same params and metrics are one result, whatever its timings.
    result = [c for c in data.columns.drop([EXPERIMENT, COMMIT]) if not c.startswith(TIMINGS)]
    names_first = _name_rank(table)[data.index].sort_values(kind="stable").index
    data = data.loc[names_first].drop_duplicates(subset=result)[[EXPERIMENT, COMMIT, *result]]
    best_first = [c for c in (VALIDATION, ACCURACY[STUDENT], "student.macro_f1") if c in data]
    return data.sort_values(best_first, ascending=False, kind="stable",
                            na_position="last").reset_index(drop=True)


def _params(runs: pd.DataFrame) -> list[str]:
    return [c for c in runs.columns if is_param(c)]


def _seeds_in(runs: pd.DataFrame) -> list[str]:
    return [s for s in SEEDS if s in runs]


def _setting(runs: pd.DataFrame) -> list[str]:
    """What makes runs repeats of one setting: their code and every param but the seeds."""
    return [COMMIT, *(p for p in _params(runs) if p not in SEEDS)]


def _shown(runs: pd.DataFrame) -> list[str]:
    """The commit where there are several, alpha and temperature, then the other params that
    differ between the runs (as `dvc exp show --only-changed`)."""
    changed = [p for p in _params(runs) if runs[p].nunique(dropna=False) > 1 and p not in GRID]
    commit = [COMMIT] if runs[COMMIT].nunique() > 1 else []
    return [*commit, *GRID, *changed]


def _settings(runs: pd.DataFrame) -> DataFrameGroupBy:
    return runs.groupby(_setting(runs), dropna=False, observed=True, sort=False)


def _spread(values: pd.Series) -> str:
    return (f"{values.mean():.4f} ± {values.std():.4f} "
            f"({values.min():.4f}–{values.max():.4f})")


def _seeds(setting: pd.DataFrame) -> str:
    """The seeds a setting's runs differ in: "1, 2, 3", or "student.seed 1, 2, 3" when the
    students' seed is what varies, or both, per run."""
    varied = [s for s in _seeds_in(setting) if setting[s].nunique() > 1]
    if len(varied) == 1 and varied[0] == SEEDS[0]:
        return ", ".join(f"{s:g}" for s in sorted(setting[varied[0]].unique()))
    if len(varied) == 1:
        return f"{varied[0]} " + ", ".join(f"{s:g}" for s in sorted(setting[varied[0]].unique()))
    return "; ".join(sorted({"/".join(f"{v:g}" for v in row)
                             for row in setting[varied].itertuples(index=False)}))


def _wins(won: pd.Series) -> str:
    return f"{won.sum()} of {len(won)}"


def _seed_count(setting: pd.DataFrame) -> int:
    return len(setting[_seeds_in(setting)].drop_duplicates())


def _p_values(p: pd.Series) -> str:
    return ", ".join(f"{v:.2g}" for v in p)


def seed_summary(runs: pd.DataFrame) -> pd.DataFrame:
    """Per setting run with two or more seeds: mean ± standard deviation (min–max) of each
    model's test accuracy (and the student's validation accuracy and thresholded figures where
    there are some), how often the student beat the baseline, and how often significantly
    (exact McNemar test on each seed's test predictions, p < 0.05). Runs of different commits
    are different settings."""
    seeded = _settings(runs).filter(lambda setting: _seed_count(setting) > 1)
    if seeded.empty:
        return pd.DataFrame()
    student, baseline = seeded[ACCURACY[STUDENT]], seeded[ACCURACY[BASELINE]]
    # In seed order, so that "p per seed" lists them as the seeds column does.
    seeded = seeded.assign(_gain=student - baseline, _won=student > baseline).sort_values(
        _seeds_in(seeded), kind="stable")
    spreads = {f"{ROLES[role].title} acc": (ACCURACY[role], _spread) for role in ROLES}
    if VALIDATION in seeded:
        spreads = {"student val acc": (VALIDATION, _spread), **spreads}
    tests = {}
    if P_VALUE in seeded and seeded[P_VALUE].notna().all():
        seeded = seeded.assign(_significant=seeded["_won"] & (seeded[P_VALUE] < 0.05))
        tests = {"significantly (p < 0.05)": ("_significant", _wins),
                 "p per seed": (P_VALUE, _p_values)}
    thresholded = {title: (column, _spread) for column, title in THRESHOLDED.items()
                   if column in seeded and seeded[column].notna().all()}
    groups = _settings(seeded)
    summary = groups.agg(
        **spreads,
        **{"student − baseline": ("_gain", _spread), "student beat baseline": ("_won", _wins)},
        **tests, **thresholded,
    )
    summary.insert(0, "seeds", groups[_seeds_in(seeded)].apply(_seeds))
    summary = summary.reset_index()
    shown = [c for c in _shown(runs) if c not in SEEDS]
    return summary[[*shown, *summary.columns.drop(_setting(runs))]]


def _cell(column: str, value: object) -> str:
    if pd.isna(value):
        return ""
    if isinstance(value, float):
        return format(value, "g" if is_param(column) else ".4f")
    return str(value)


def markdown_table(table: pd.DataFrame) -> str:
    """Params as written (%g), metrics to four decimals, unknown values as empty cells."""
    cells = table.apply(lambda column: column.map(lambda value: _cell(column.name, value)))
    return cells.to_markdown(index=False, disable_numparse=True) + "\n"


def run_table(runs: pd.DataFrame) -> pd.DataFrame:
    """The report's main table: names, the params worth showing, the key metrics titled."""
    metrics = [c for c in METRIC_TITLES if c in runs]
    table = runs[[EXPERIMENT, *_shown(runs), *metrics]].rename(columns=METRIC_TITLES)
    # Columns that no run has (oos figures of a data set without oos) are left out.
    return table.dropna(axis=1, how="all")


def _averaged(cells: pd.DataFrame) -> str:
    """What the figure's numbers are where they are not one run's."""
    seeded = cells["seeds"] > 1
    if seeded.all():
        return " (mean over seeds)"
    if seeded.any():
        return " (mean over seeds where a setting has several)"
    return " (mean over reruns)" if (cells["runs"] > 1).any() else ""


def figure_of(runs: pd.DataFrame, figure: Path, suffix: str = "") -> None:
    """Plot the distilled student's accuracy over alpha x temperature: per cell, the mean of a
    setting's runs, with the teacher's and the baseline's beside the title. The cells also go
    to a csv beside the figure, which dvc.yaml declares as a DVC plot (reports/compare.csv).
    When the runs are seeds of one setting (one cell), the figure shows them seed by seed,
    baseline beside distilled student, which a one-cell grid would hide."""
    settings = _settings(runs)
    means = settings.agg(
        **{role: (ACCURACY[role], "mean") for role in ROLES},
        runs=(ACCURACY[STUDENT], "size"),
    )
    means["seeds"] = settings[_seeds_in(runs)].apply(_seed_count)
    means = means.reset_index()
    # Settings that differ in more than alpha and T share a cell: it shows the best of them.
    cells = means.sort_values(STUDENT, ascending=False, kind="stable").drop_duplicates(GRID)
    best = cells.iloc[0]
    cells[[*GRID, STUDENT, "runs"]].rename(columns={STUDENT: "student_accuracy"}).to_csv(
        figure.with_suffix(".csv"), index=False)
    if len(means) == 1 and best["seeds"] > 1:
        seeded = runs.sort_values(_seeds_in(runs), kind="stable")
        varied = [s for s in _seeds_in(runs) if seeded[s].nunique() > 1]
        plots.seed_pairs(
            ["/".join(f"{v:g}" for v in row) for row in seeded[varied].itertuples(index=False)],
            list(seeded[ACCURACY[BASELINE]]), list(seeded[ACCURACY[STUDENT]]),
            {ROLES[role].title: seeded[ACCURACY[role]].mean() for role in ROLES
             if role not in (STUDENT, BASELINE) and seeded[ACCURACY[role]].notna().all()},
            figure, f"Test accuracy per {' / '.join(varied)}{suffix}")
        return
    plots.grid_heatmap(
        {(a, t): s for a, t, s in cells[[*GRID, STUDENT]].itertuples(index=False)}, figure,
        f"{ROLES[STUDENT].title.capitalize()} test accuracy{suffix}{_averaged(cells)}",
        "test accuracy",
        {f"{ROLES[role].title} acc": best[role] for role in ROLES
         if role != STUDENT and pd.notna(best[role])})


def write_report(runs: pd.DataFrame, out: Path, figure: Path, records: bool = False) -> None:
    """The comparison as markdown at `out`, with its figure at `figure`. `records`: the runs
    are run records (record_rows), whose code versions are named by a record, not a commit."""
    commits = runs[COMMIT].nunique()
    # The newest code's runs only: runs of different code are never averaged.
    commit = runs[COMMIT].min()
    label = "record" if records else "commit"
    figure_of(runs[runs[COMMIT] == commit], figure,
              f", {label} {commit}" if commits > 1 else "")
    if records:
        what = (f"{len(runs)} run records"
                + (f" of {commits} versions of the code, each named by the first record that "
                   "has it" if commits > 1 else ", all of one version of the code"))
    else:
        what = (f"{len(runs)} runs (DVC experiments and the workspace"
                + (f" of {commits} versions of the code, each named by the newest commit that "
                   "has it" if commits > 1 else f", commit `{commit}`") + ")")
    body = (
        "# Experiment comparison\n\n"
        f"{what}, best distilled-student validation accuracy first (settings are chosen on "
        "validation; the test figures are beside it). Teacher and baseline do not depend "
        "on alpha or temperature, so they repeat.\n\n"
        + markdown_table(run_table(runs))
        + f"\n![distilled student and baseline test accuracy]"
        f"({Path(os.path.relpath(figure, out.parent)).as_posix()})\n"
    )
    if commits > 1:
        body += f"\nThe figure shows the runs of the code of {label} `{commit}` only.\n"
    summary = seed_summary(runs)
    if not summary.empty:
        body += (
            "\n## Across seeds\n\nRuns whose params differ only in their seeds (`student.seed`: "
            "the baseline's and the distilled student's initialisation and data order; `seed` "
            "also the data splits carved from train and the teacher): test accuracy as mean ± "
            "standard deviation (min–max). The distilled student beats the baseline "
            "significantly on a seed when it is more accurate and the exact McNemar test on "
            "that seed's test predictions gives p < 0.05.\n\n" + markdown_table(summary)
        )
    write_text(out, body)


def _with_metrics_file(root: str, rows: list[dict]) -> list[dict]:
    """`rows` with every key of reports/metrics.json at each row's revision.

    dvc.yaml declares only the headline reports/summary.json as the evaluate stage's metrics
    (so that `dvc exp show` fits a terminal); the full record is a plain output, which
    `dvc metrics show` reads when named.
    """
    revs = sorted({row["rev"] for row in rows if row["rev"] != WORKSPACE})
    shown = Repo(root).metrics.show(targets=[str(METRICS)], revs=revs, hide_workspace=False)
    merged = []
    for row in rows:
        data = shown.get(row["rev"], {}).get("data", {}).get(str(METRICS), {}).get("data")
        merged.append({**row, **flatten(data)} if isinstance(data, dict) else row)
    return merged


def exp_show(num: int) -> list[dict]:
    """The rows of `dvc exp show`: the workspace, and the last `num` commits of HEAD's history
    (-1: all of them) with their experiments, each with its reports/metrics.json."""
    try:
        # Without a repository exp_show() would take the current folder for a git URL to clone.
        root = Repo.find_root()
        rows = dvc.api.exp_show(repo=root, num=num)
        if not rows:
            raise UserError("`dvc exp show` lists nothing: commit the project first")
        return _with_metrics_file(root, rows)
    except DvcException as err:
        raise UserError(f"`dvc exp show` failed: {err}") from None


# What a run record holds: a run's params.yaml, reports/metrics.json and dvc.lock, side by side.
LOCK = "dvc.lock"
RECORD = (PARAMS.name, METRICS.name, LOCK)


def _as_exp_show(value: object) -> object:
    """A value as exp_show() gives it: rendered as text, read back as a number if it is one."""
    try:
        return float(str(value))
    except ValueError:
        return str(value)


def record_rows(folders: list[Path]) -> list[dict]:
    """Rows as `dvc.api.exp_show()` gives them for run records: folders that each hold a run's
    params.yaml, metrics.json and dvc.lock (what DVC experiments leave once their refs are gone),
    each named by its folder, with its dependencies' hashes from its dvc.lock."""
    rows = []
    for folder in folders:
        missing = [name for name in RECORD if not (folder / name).is_file()]
        if missing:
            raise UserError(f"{folder} is not a run record: it lacks {', '.join(missing)} (a "
                            f"record is a run's {', '.join(RECORD)} in one folder)")
        params = yaml.safe_load((folder / PARAMS.name).read_text(encoding="utf-8")) or {}
        lock = yaml.safe_load((folder / LOCK).read_text(encoding="utf-8")) or {}
        # A column per dependency, its hash the value, as exp_show() gives them.
        deps = {dep["path"]: dep.get("md5") for stage in lock.get("stages", {}).values()
                for dep in stage.get("deps", [])}
        rows.append({
            "Experiment": folder.name, "rev": folder.name, "typ": "baseline", "State": None,
            **{key: _as_exp_show(value) for key, value in flatten(params).items()},
            **flatten(read_json(folder / METRICS.name, "evaluate")),
            **deps,
        })
    # exp_show() gives every row every column.
    columns = dict.fromkeys(key for row in rows for key in row)
    return [{**dict.fromkeys(columns), **row} for row in rows]


@stage_main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    # Beside the table, not in reports/plots: that folder is an output of the evaluate stage.
    parser.add_argument("--figure", type=Path, default=DEFAULT_OUT.with_suffix(".png"))
    parser.add_argument("-n", "--num", type=int, default=1,
                        help="the experiments of the last NUM commits (as `dvc exp show -n`)")
    parser.add_argument("--all-commits", action="store_true",
                        help="also the experiments of the commits before HEAD")
    parser.add_argument("--runs", type=Path, nargs="+", metavar="FOLDER",
                        help="run records instead of DVC experiments: folders with a run's "
                             "params.yaml, metrics.json and dvc.lock")
    args = parser.parse_args()
    if args.runs:
        compared = distinct_runs(record_rows(args.runs))
    else:
        compared = distinct_runs(exp_show(-1 if args.all_commits else args.num))
    args.figure.parent.mkdir(parents=True, exist_ok=True)
    write_report(compared, args.out, args.figure, records=bool(args.runs))
    log.info("%d runs compared -> %s, %s", len(compared), args.out, args.figure)


if __name__ == "__main__":
    main()
