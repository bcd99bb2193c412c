"""Compare DVC experiments: a table of params and key metrics, best first, and a plot of the
distilled student's accuracy over alpha and temperature.

    dvc exp run --queue -S alpha=0.2,0.5,0.8 -S temperature=2,4,8
    dvc queue start -j 1
    python -m pipeline.compare          # writes reports/compare.md and reports/compare.png
"""

from __future__ import annotations

import argparse
import json
import logging
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
        row = {"experiment": name, "alpha": params["alpha"],
               "temperature": params["temperature"],
               "student lr": params["student"]["train"]["learning_rate"],
               "student epochs": params["student"]["train"]["epochs"]}
        for title, (role, key) in COLUMNS:
            row[title] = metrics.get(role, {}).get(key)
        rows.append(row)
    return sorted(rows, key=lambda r: (-(r["student acc"] or 0), -(r["student macro-F1"] or 0)))


def markdown_table(rows: list[dict]) -> str:
    head = list(rows[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [f"{v:.4f}" if isinstance(v, float) and k not in ("alpha", "temperature", "student lr")
                 else f"{v:g}" if isinstance(v, float) else ("" if v is None else str(v))
                 for k, v in row.items()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_report(rows: list[dict], out: Path, figure: Path) -> None:
    # Experiments that differ in more than alpha/T would share a cell: keep the best of each.
    cells: dict[tuple[float, float], float] = {}
    for row in rows:
        cells.setdefault((row["alpha"], row["temperature"]), row["student acc"])
    references = {"teacher": rows[0]["teacher acc"], "baseline student": rows[0]["baseline acc"]}
    plots.grid_heatmap(cells, figure, "Distilled student test accuracy", "test accuracy",
                       {f"{k} acc": v for k, v in references.items() if v is not None})
    body = (
        "# Experiment comparison\n\n"
        f"{len(rows)} runs from `dvc exp show`, best distilled-student test accuracy first. "
        "Teacher and baseline do not depend on alpha or temperature, so they repeat.\n\n"
        + markdown_table(rows)
        + f"\n![student accuracy over alpha and temperature]({figure.relative_to(out.parent)})\n"
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
