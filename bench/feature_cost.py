"""What a hidden-state term costs: an online teacher on every step against caching the teacher's
hidden states once, as the soft targets are cached.

    python -m bench.feature_cost     # configs/clinc150.yaml, a 3,000-row slice, 40 steps

On one machine, the same data, teacher, student and steps, it times the distill stage's
training step (a) with the logit terms only (cached teacher logits), and with (b) hidden_cosine
and (c) hidden_mse added (the teacher runs forward on every batch for its hidden states), and
prints the ratios. Beside them it prints what a cache of the hidden states would hold for the
whole training split: every real token's state at each mapped teacher layer, in fp32 and in
bf16, against the size of the cached logits.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import logging
import tempfile

import numpy as np
import torch
from datasets import DatasetDict
from transformers import set_seed
from transformers.utils import logging as hf_logging

from pipeline import soft_targets
from pipeline.config import load_params
from pipeline.data import prepare_dataset
from pipeline.distill import DistillationTrainer
from pipeline.models import build_student, build_teacher, load_tokenizer, resolve
from pipeline.soft_targets import TEACHER_LOGITS
from pipeline.tasks import TextTask
from pipeline.training import ClassificationCollator, training_arguments


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="configs/clinc150.yaml")
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    hf_logging.set_verbosity_error()
    params = load_params(args.params)
    set_seed(0)
    ds, names = prepare_dataset(params.data, seed=0)
    train = ds["train"].shuffle(seed=0).select(range(args.rows))
    tokenizer = load_tokenizer(resolve(params.teacher.model))
    teacher = build_teacher(params.teacher.model_copy(update={"finetune": True}), names).eval()
    student0 = build_student(params.student, names, teacher)
    text = TextTask()
    soft = soft_targets.compute([(teacher, tokenizer)], text, {"train": train, "validation": train},
                                params.soft_targets.batch_size, params.data.max_length)
    encoded = text.encode(DatasetDict(train=soft_targets.attach(train, soft["train"])), tokenizer,
                          params.data.max_length)["train"]
    collate = ClassificationCollator(tokenizer, (TEACHER_LOGITS,))
    layer_map = tuple(params.layer_map())
    seconds = {}
    with tempfile.TemporaryDirectory() as scratch:
        cfg = params.student.train.model_copy(update={"epochs": 1})
        stage_args = dataclasses.replace(
            training_arguments(cfg, 0, scratch, "bench"), max_steps=args.steps,
            eval_strategy="no", save_strategy="no", logging_strategy="no", disable_tqdm=True)
        for name, loss in (("warm-up", None), ("a", None), ("b", "hidden_cosine"),
                           ("c", "hidden_mse")):
            features = params.features.model_copy(update={"loss": loss})
            trainer = DistillationTrainer(
                model=copy.deepcopy(student0), args=stage_args, train_dataset=encoded,
                data_collator=collate, processing_class=tokenizer, alpha=params.alpha,
                temperature=params.temperature, features=features, teacher=teacher,
                layer_map=layer_map)
            seconds[name] = trainer.train().metrics["train_runtime"]
    per_step = {k: v / args.steps for k, v in seconds.items()}
    full = ds["train"]
    tokens = np.array([len(ids) for ids in tokenizer(list(full["text"]), truncation=True,
                                                      max_length=params.data.max_length)["input_ids"]])
    hidden = teacher.config.hidden_size
    cache = tokens.sum() * hidden * len(layer_map)
    logits = len(full) * len(names) * 4
    print(f"device: cpu x {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"student {params.student.layers} of {params.teacher.model}, batch "
          f"{params.student.train.batch_size}, {args.steps} steps on {args.rows} rows of "
          f"{params.data.source}")
    print(f"  (a) logit terms only (cached logits)        {1000 * per_step['a']:7.1f} ms/step")
    for name, label in (("b", "+ hidden_cosine, online teacher"), ("c", "+ hidden_mse, online teacher")):
        print(f"  ({name}) {label:40s} {1000 * per_step[name]:7.1f} ms/step  "
              f"= {per_step[name] / per_step['a']:.2f}x (a)")
    print(f"  a cache of hidden states for all {len(full):,} training rows ({tokens.sum():,} tokens, "
          f"{len(layer_map)} layers x {hidden}): {cache * 4 / 2**30:.2f} GiB fp32, "
          f"{cache * 2 / 2**30:.2f} GiB bf16; the cached logits: {logits / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
