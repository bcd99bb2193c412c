"""How batch-1 latency is timed: each model served on its own, against the evaluation's turns.

    python -m bench.latency_methods                       # the workspace's models, after dvc repro
    python -m bench.latency_methods --threads 2 --runs 200

A model served on its own has the machine to itself: the reference is each model timed in a
process of its own (`alone`), after a warm-up. The evaluation cannot do that for seven models
within one stage and stay fair to drift of the machine's speed, so it lets the models take turns
in blocks (pipeline.speed.latency_ms), each turn after a pause (pipeline.speed.SETTLE_S). This
prints each model's median and p95, and the teacher's median over each model's, for the
reference and for the turns with and without the pause, so that they can be compared on the
machine at hand.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys

import torch

from pipeline import paths, speed
from pipeline.config import load_params
from pipeline.evaluation import served_models, workspace_models
from pipeline.prepared import load_prepared
from pipeline.tasks import get_task


def _models(only: str | None) -> tuple[dict, list]:
    params = load_params(paths.PARAMS)
    task = get_task(params.task)
    ds, _ = load_prepared(paths.PREPARED)
    served = served_models(*workspace_models(), task, params.data.max_length)
    models = {name: m for name, (m, _, _) in served.items() if only in (None, name)}
    return models, ds["test"][task.column]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--block", type=int, default=10)
    parser.add_argument("--alone", help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    models, inputs = _models(args.alone)
    if args.alone:
        # One model in this process: all its runs in one block.
        result = speed.latency_ms(models, inputs, args.runs, 10, args.runs, seed=42)
        print(json.dumps(result[args.alone]))
        return
    alone = {}
    for name in models:
        out = subprocess.run([sys.executable, "-m", "bench.latency_methods", "--alone", name,
                              "--threads", str(args.threads), "--runs", str(args.runs)],
                             check=True, capture_output=True, text=True).stdout
        alone[name] = json.loads(out.strip().splitlines()[-1])
    methods = {"alone": alone}
    # The evaluation's turns as they are, and as they were before the pause.
    for pause in (0.0, speed.SETTLE_S):
        methods[f"turns, {pause:g} s pause"] = speed.latency_ms(
            models, inputs, args.runs, 10, args.block, seed=42, settle_s=pause)
    print(f"{args.threads} threads, {args.runs} queries per model, turns of {args.block}; "
          "median ms (the teacher's median over the model's), then p95 ms")
    print(f"{'model':18s}" + "".join(f"{m:>30s}" for m in methods))
    for name in models:
        cells = [f"{t[name]['latency_ms_median']:6.2f} "
                 f"({t['teacher']['latency_ms_median'] / t[name]['latency_ms_median']:4.1f}x) "
                 f"{t[name]['latency_ms_p95']:6.2f}" for t in methods.values()]
        print(f"{name:18s}" + "".join(f"{c:>30s}" for c in cells))


if __name__ == "__main__":
    main()
