"""Training throughput of the baseline student in 1, 2, ... processes (DDP through the Trainer); text tasks.

    for n in 1 2 4; do
      OMP_NUM_THREADS=$(( $(nproc) / n )) torchrun --nproc-per-node $n -m bench.ddp_scaling \
          --record /tmp/ddp_scaling.jsonl
    done

Each launch trains the params file's student on hard labels (the baseline stage's Trainer
settings: per-device batch student.train.batch_size, length-grouped batches, the same
collator) for --steps optimizer steps, times all but the first --warmup, and prints examples/s
in total and per process; with --record it appends that row to a file and prints every row
there against the 1-process one (scaling = examples/s over the 1-process rate; efficiency =
scaling / processes). On a GPU machine, one process per GPU (nccl); on a CPU, gloo, and the
processes share the cores, so give each its share of threads as above (torchrun sets 1 when
OMP_NUM_THREADS is unset).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import tempfile
import time
from pathlib import Path

import torch
from transformers import Trainer, TrainerCallback, set_seed
from transformers.utils import logging as hf_logging

from pipeline import distributed
from pipeline.config import load_params
from pipeline.data import prepare_dataset
from pipeline.models import build_student, build_teacher, load_tokenizer
from pipeline.tasks import TextTask
from pipeline.training import ClassificationCollator, global_batch, training_arguments


class StepClock(TrainerCallback):
    """Wall time from the end of step `warmup` to the end of training."""

    def __init__(self, warmup: int):
        self.warmup, self.start, self.seconds = warmup, None, None

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.warmup:
            self.start = time.perf_counter()

    def on_train_end(self, args, state, control, **kwargs):
        self.seconds = time.perf_counter() - self.start


def report(rows: list[dict]) -> None:
    one = next((r for r in rows if r["processes"] == 1), None)
    for r in rows:
        line = (f"  {r['processes']:3d} process(es), global batch {r['global_batch']:4d}: "
                f"{r['examples_per_s']:8.1f} examples/s, {r['per_process']:8.1f} per process")
        if one:
            scaling = r["examples_per_s"] / one["examples_per_s"]
            line += f"; scaling {scaling:.2f}x, efficiency {scaling / r['processes']:.0%}"
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--record", type=Path, default=None,
                        help="a JSON-lines file to append this launch's row to")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    hf_logging.set_verbosity_error()
    params = load_params(args.params)
    set_seed(params.student.seed)
    ds, names = prepare_dataset(params.data, seed=params.seed)
    tokenizer = load_tokenizer(params.teacher.model)
    student = build_student(params.student, names, build_teacher(params.teacher, names))
    encoded = TextTask().encode(ds, tokenizer, params.data.max_length)
    clock = StepClock(args.warmup)
    with tempfile.TemporaryDirectory() as scratch:
        train_args = dataclasses.replace(
            training_arguments(params.student.train, params.student.seed, scratch, "bench"),
            max_steps=args.steps + args.warmup, eval_strategy="no", save_strategy="no",
            logging_strategy="no", disable_tqdm=True)
        Trainer(model=student, args=train_args, train_dataset=encoded["train"],
                data_collator=ClassificationCollator(tokenizer), callbacks=[clock]).train()
    if not distributed.is_main():
        return
    rate = args.steps * global_batch(train_args) / clock.seconds
    row = {"processes": train_args.world_size, "global_batch": global_batch(train_args),
           "examples_per_s": rate, "per_process": rate / train_args.world_size,
           "threads_per_process": torch.get_num_threads(), "device": str(train_args.device),
           "steps": args.steps}
    print(f"{params.data.source}, student {params.student.init} {params.student.layers}, "
          f"{args.steps} timed steps, {row['threads_per_process']} thread(s) per process, "
          f"torch {torch.__version__}")
    rows = [row]
    if args.record:
        with args.record.open("a") as f:
            f.write(json.dumps(row) + "\n")
        rows = [json.loads(line) for line in args.record.read_text().splitlines()]
    report(rows)


if __name__ == "__main__":
    main()
