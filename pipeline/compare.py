"""Compare DVC experiments: a table of params and key metrics, best first, a plot of the
distilled student's accuracy over alpha and temperature, and the mean and spread over seeds of
runs that differ only in their seed.

    dvc exp run --queue -S alpha=0.2,0.5,0.8 -S temperature=2,4,8
    dvc exp run --queue -S seed=1,2,3
    dvc queue start -j 1
    python -m pipeline.compare          # writes reports/compare.md and reports/compare.png
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import subprocess
from collections.abc import Iterator
from pathlib import Path

from pipeline import plots
from pipeline.errors import UserError, stage_main
from pipeline.outputs import write_text
from pipeline.paths import METRICS, PARAMS, REPORTS

log = logging.getLogger(__name__)

# (column title, path in metrics.json)
COLUMNS = [
    ("student acc", ("student", "accuracy")),
    ("student macro-F1", ("student", "macro_f1")),
    ("in-scope acc", ("student", "in_scope_accuracy")),
    ("oos recall", ("student", "oos_recall")),
    ("ECE", ("student", "ece")),
    ("agreement", ("student_vs_teacher", "agreement")),
    ("student / teacher acc", ("student_vs_teacher", "accuracy_ratio")),
    ("baseline acc", ("baseline", "accuracy")),
    ("teacher acc", ("teacher", "accuracy")),
]


def _records(nodes: list[dict]) -> Iterator[tuple[str, dict]]:
    """Walk `dvc exp show --json`: commits, each with its experiments, each with its revs.
    Yields (name, data) for every node that has data."""
    for node in nodes:
        for rev in node.get("revs", [node]):
            if data := rev.get("data"):
                yield rev.get("name") or rev.get("rev"), data
            yield from _records(rev.get("experiments") or [])


def experiments(show: list[dict]) -> list[dict]:
    """One row per distinct run with metrics: the commit, its experiments, the workspace."""
    rows, seen = [], set()
    # The workspace after a `dvc repro` repeats its commit, and an experiment with the commit's
    # params repeats it too: one row per distinct result, named by a commit where possible.
    records = sorted(_records(show), key=lambda rec: rec[0] == "workspace")
    for name, data in records:
        params = (data.get("params") or {}).get(str(PARAMS), {}).get("data")
        metrics = (data.get("metrics") or {}).get(str(METRICS), {}).get("data")
        if not params or not metrics:
            continue
        result = json.dumps([params, metrics], sort_keys=True)
        if result in seen:
            continue
        seen.add(result)
        rest = {k: v for k, v in params.items() if k != "seed"}
        row = {"experiment": name, "seed": params.get("seed"), "alpha": params["alpha"],
               "temperature": params["temperature"],
               "student lr": params["student"]["train"]["learning_rate"],
               "student epochs": params["student"]["train"]["epochs"]}
        for title, (role, key) in COLUMNS:
            row[title] = metrics.get(role, {}).get(key)
        # Runs with equal params but for the seed form one group in the seeds table.
        row[GROUP] = json.dumps(rest, sort_keys=True)
        rows.append(row)
    return sorted(rows, key=lambda r: (-(r["student acc"] or 0), -(r["student macro-F1"] or 0)))


GROUP = "_params_but_seed"
PLAIN = ("alpha", "temperature", "student lr", "seed")


def markdown_table(rows: list[dict]) -> str:
    # Columns that no run has (oos figures of a data set without oos) are left out.
    head = [k for k in rows[0] if not k.startswith("_") and any(r[k] is not None for r in rows)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [f"{v:.4f}" if isinstance(v, float) and k not in PLAIN
                 else f"{v:g}" if isinstance(v, float) else ("" if v is None else str(v))
                 for k, v in ((k, row[k]) for k in head)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _spread(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {sd:.4f} ({min(values):.4f}–{max(values):.4f})"


def seed_groups(rows: list[dict]) -> list[list[dict]]:
    """The runs grouped by their params but the seed: one group per setting."""
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row[GROUP], []).append(row)
    return list(groups.values())


def seed_summary(rows: list[dict]) -> list[dict]:
    """Per group of runs that differ only in the seed (two or more seeds): mean ± standard
    deviation (min–max) of each model's test accuracy, and how often the student beat the
    baseline."""
    summary = []
    for runs in seed_groups(rows):
        seeds = sorted({r["seed"] for r in runs if r["seed"] is not None})
        if len(seeds) < 2 or any(r["baseline acc"] is None for r in runs):
            continue
        student = [r["student acc"] for r in runs]
        baseline = [r["baseline acc"] for r in runs]
        summary.append({
            "alpha": runs[0]["alpha"], "temperature": runs[0]["temperature"],
            "seeds": ", ".join(map(str, seeds)),
            "teacher acc": _spread([r["teacher acc"] for r in runs]),
            "baseline acc": _spread(baseline),
            "student acc": _spread(student),
            "student − baseline": _spread([s - b for s, b in zip(student, baseline, strict=True)]),
            "student beat baseline": f"{sum(s > b for s, b in zip(student, baseline, strict=True))}"
                                     f" of {len(runs)}",
        })
    return summary


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.mean(known) if known else None


def _student_mean(runs: list[dict]) -> float:
    return _mean([r["student acc"] for r in runs]) or 0.0


def write_report(rows: list[dict], out: Path, figure: Path) -> None:
    # Runs that differ only in the seed are one setting: its cell shows their mean. Settings
    # that differ in more than alpha/T would share a cell: the cell keeps the best of them.
    cells: dict[tuple[float, float], list[dict]] = {}
    for runs in seed_groups(rows):
        key = (runs[0]["alpha"], runs[0]["temperature"])
        if key not in cells or _student_mean(runs) > _student_mean(cells[key]):
            cells[key] = runs
    best = max(cells.values(), key=_student_mean)
    references = {"teacher": _mean([r["teacher acc"] for r in best]),
                  "baseline student": _mean([r["baseline acc"] for r in best])}
    seeded = any(len(runs) > 1 for runs in cells.values())
    plots.grid_heatmap(
        {key: _student_mean(runs) for key, runs in cells.items()}, figure,
        "Distilled student test accuracy" + (" (mean over seeds)" if seeded else ""),
        "test accuracy",
        {f"{k} acc": v for k, v in references.items() if v is not None})
    body = (
        "# Experiment comparison\n\n"
        f"{len(rows)} runs from `dvc exp show`, best distilled-student test accuracy first. "
        "Teacher and baseline do not depend on alpha or temperature, so they repeat.\n\n"
        + markdown_table(rows)
        + f"\n![student accuracy over alpha and temperature]({figure.relative_to(out.parent)})\n"
    )
    if summary := seed_summary(rows):
        body += (
            "\n## Across seeds\n\nRuns whose params differ only in `seed` (which also changes "
            "the data splits carved from train and every model's initialisation): test accuracy "
            "as mean ± standard deviation (min–max).\n\n" + markdown_table(summary)
        )
    write_text(out, body)


def dvc_exp_show() -> list[dict]:
    try:
        # Every commit's experiments: a grid queued before the latest commit still counts.
        done = subprocess.run(["dvc", "exp", "show", "--json", "--all-commits"], check=True,
                              capture_output=True, text=True)
    except subprocess.CalledProcessError as err:
        raise UserError(f"`dvc exp show --json` failed: {err.stderr.strip()}") from None
    return json.loads(done.stdout)


@stage_main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPORTS / "compare.md")
    # Beside the table, not in reports/plots: that folder is an output of the evaluate stage.
    parser.add_argument("--figure", type=Path, default=REPORTS / "compare.png")
    args = parser.parse_args()
    rows = experiments(dvc_exp_show())
    if not rows:
        raise UserError("no experiment with reports/metrics.json yet: run `dvc repro` or "
                        "`dvc exp run` first")
    args.figure.parent.mkdir(parents=True, exist_ok=True)
    write_report(rows, args.out, args.figure)
    log.info("%d runs compared -> %s, %s", len(rows), args.out, args.figure)


if __name__ == "__main__":
    main()
