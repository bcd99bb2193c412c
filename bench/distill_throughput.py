"""Training speed of distillation: the usual way against this project's distill stage.

    python -m bench.distill_throughput     # configs/clinc150.yaml, a 3,000-row slice, 60 steps

On one machine, the same data, teacher, student, batch size, optimizer settings and steps
(all from the params file's data, alpha, temperature and student sections), it times
  (a)  the usual way: the teacher runs forward on every step, shuffled batches,
       DataCollatorWithPadding, every student weight trained (bench/usual_distillation.py);
  (a') the same with every batch padded to max_length 64, as many blog versions do;
  (b)  the distill stage's code path as the params file sets it up: teacher logits computed
       once (soft_targets), dynamic padding, length-grouped batches, tokens cached by
       `datasets`, word embeddings frozen when student.freeze_word_embeddings says so;
  (b~) the same with student.freeze_word_embeddings the other way, for reference;
  (c)  the floor: (b)'s student, forward + backward + optimizer step alone on (b)'s batches;
and prints examples/s, the ratios, the distillation loss of (a) and (b) on held-out rows after
the same steps, and the share of the CPU's fp32 matmul rate that (b) reaches.

The teacher is params' teacher.model with a new classification head: speed does not depend on
its training. `--teacher models/trained/teacher` uses a fine-tuned one.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import logging
import tempfile
import time

import torch
from datasets import DatasetDict
from transformers import DataCollatorWithPadding, Trainer, set_seed
from transformers.utils import logging as hf_logging

from bench.usual_distillation import OnlineDistillationTrainer
from pipeline import soft_targets
from pipeline.config import load_params
from pipeline.data import prepare_dataset
from pipeline.distill import DistillationTrainer, distillation_loss
from pipeline.models import build_student, build_teacher, load_tokenizer, resolve
from pipeline.soft_targets import TEACHER_LOGITS
from pipeline.tasks import TextTask
from pipeline.training import ClassificationCollator, training_arguments


def matmul_gflops(n: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


def train_flops_per_example(model: torch.nn.Module, tokens: float) -> float:
    """6 x non-embedding parameters x tokens (forward 2, backward 4; Kaplan et al. 2020), plus
    the attention score and value products."""
    embed = sum(p.numel() for n, p in model.named_parameters() if "embeddings" in n)
    dense = sum(p.numel() for p in model.parameters()) - embed
    cfg = model.config
    attention = 4 * cfg.num_hidden_layers * tokens * tokens * cfg.hidden_size
    return 6 * dense * tokens + 3 * attention


def timed(trainer: Trainer) -> tuple[float, Trainer]:
    out = trainer.train()
    return out.metrics["train_runtime"], trainer


def warm_up(model, batches: list[dict]) -> None:
    """A few untimed steps, so that no timed run pays for thread-pool and allocator start-up."""
    model = copy.deepcopy(model).train()
    for batch in batches:
        inputs = {k: v for k, v in batch.items() if k != TEACHER_LOGITS}
        model(**inputs).loss.backward()


def held_out_loss(model, batches: list[dict], alpha: float, temperature: float) -> float:
    model.eval()
    total = 0.0
    with torch.no_grad():
        for batch in batches:
            inputs = {k: v for k, v in batch.items() if k not in ("labels", TEACHER_LOGITS)}
            logits = model(**inputs).logits
            total += distillation_loss(logits, batch[TEACHER_LOGITS], batch["labels"], alpha,
                                       temperature).item()
    return total / len(batches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="configs/clinc150.yaml",
                        help="params file whose data, alpha, temperature and student to use")
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--teacher", default=None,
                        help="a model name/path (default: the params file's teacher.model)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    hf_logging.set_verbosity_error()
    params = load_params(args.params)
    alpha, temperature, max_length = params.alpha, params.temperature, params.data.max_length
    batch_size = params.student.train.batch_size
    set_seed(0)

    ds, names = prepare_dataset(params.data, seed=0)
    train = ds["train"].shuffle(seed=0).select(range(args.rows))
    held = ds["validation"].shuffle(seed=0).select(range(512))
    teacher_name = args.teacher or params.teacher.model
    tokenizer = load_tokenizer(resolve(teacher_name))
    teacher = build_teacher(
        params.teacher.model_copy(update={"model": teacher_name, "finetune": True}), names).eval()
    frozen = params.student.freeze_word_embeddings
    students0 = {
        "b": build_student(params.student, names, teacher),
        "b~": build_student(params.student.model_copy(update={"freeze_word_embeddings": not frozen}),
                            names, teacher),
    }
    # The usual way trains every weight, whatever the params file says.
    usual0 = students0["b~" if frozen else "b"]

    start = time.perf_counter()
    text = TextTask()
    soft = soft_targets.compute([(teacher, tokenizer)], text, {"train": train, "validation": held},
                                params.soft_targets.batch_size, max_length)
    soft_seconds = time.perf_counter() - start
    encoded = text.encode(DatasetDict({"train": soft_targets.attach(train, soft["train"]),
                                       "validation": soft_targets.attach(held, soft["validation"])}),
                          tokenizer, max_length)
    mean_tokens = sum(encoded["train"]["length"]) / len(encoded["train"])
    plain = encoded["train"].select_columns([*tokenizer.model_input_names, "label"])
    collate = ClassificationCollator(tokenizer, (TEACHER_LOGITS,))
    held_batches = [collate([encoded["validation"][j] for j in range(i, i + 64)])
                    for i in range(0, 512, 64)]
    cfg = params.student.train.model_copy(update={"epochs": 1})
    warm_up(usual0, [collate([encoded["train"][j] for j in range(batch_size)])] * 3)
    results, students = {}, {}

    with tempfile.TemporaryDirectory() as scratch:
        stage_args = dataclasses.replace(
            training_arguments(cfg, 0, scratch, "bench"), max_steps=args.steps,
            eval_strategy="no", save_strategy="no", logging_strategy="no", disable_tqdm=True)
        # The usual way with the same optimizer settings, on shuffled batches.
        usual_args = dataclasses.replace(stage_args, train_sampling_strategy="random")

        for name, pad in (("a", DataCollatorWithPadding(tokenizer)),
                          ("a'", DataCollatorWithPadding(tokenizer, padding="max_length",
                                                         max_length=64))):
            students[name] = copy.deepcopy(usual0)
            results[name], _ = timed(OnlineDistillationTrainer(
                model=students[name], args=usual_args, train_dataset=plain, data_collator=pad,
                teacher_model=teacher, alpha=alpha, temperature=temperature))

        trainers = {}
        for name in ("b", "b~"):
            students[name] = copy.deepcopy(students0[name])
            results[name], trainers[name] = timed(DistillationTrainer(
                model=students[name], args=stage_args, train_dataset=encoded["train"],
                data_collator=collate, processing_class=tokenizer, alpha=alpha,
                temperature=temperature))

        # (c): the same student and batches, no Trainer, no distillation loss.
        floor = copy.deepcopy(students0["b"]).train()
        # The Trainer's own optimizer choice (fused AdamW on torch 2.13), so only the loop differs.
        optimizer_cls, optimizer_kwargs = Trainer.get_optimizer_cls_and_kwargs(stage_args)
        optimizer = optimizer_cls([p for p in floor.parameters() if p.requires_grad],
                                  **optimizer_kwargs)
        batches = []
        for batch in trainers["b"].get_train_dataloader():
            batches.append({k: v for k, v in batch.items() if k != TEACHER_LOGITS})
            if len(batches) == args.steps:
                break
        start = time.perf_counter()
        for batch in batches:
            floor(**batch).loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        results["c"] = time.perf_counter() - start

    speed = {k: args.steps * batch_size / v for k, v in results.items()}
    rate = matmul_gflops()
    flops = train_flops_per_example(students0["b"], mean_tokens)
    b_label = "word embeddings frozen" if frozen else "word embeddings trained"
    other_label = "word embeddings trained" if frozen else "word embeddings frozen"
    print(f"device: cpu x {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"data: {args.rows} train rows of {params.data.source} (mean {mean_tokens:.1f} tokens), "
          f"{args.steps} steps of {batch_size}; teacher {teacher_name}, "
          f"student {params.student.init} {params.student.layers}")
    for name, label in (("a", "usual: online teacher, shuffled, dynamic padding"),
                        ("a'", "usual, padded to 64"),
                        ("b", f"this project's distill stage, {b_label}"),
                        ("b~", f"the distill stage, {other_label}"),
                        ("c", "floor: (b)'s student fwd+bwd+step only")):
        print(f"  ({name:2s}) {label:56s} {speed[name]:8.1f} examples/s")
    a_fixed = speed["a'"]
    print(f"  b/a = {speed['b'] / speed['a']:.2f}x   b/a' = {speed['b'] / a_fixed:.2f}x   "
          f"b/c = {speed['b'] / speed['c']:.2f} (c/b = {speed['c'] / speed['b']:.2f}x)   "
          f"b~/a = {speed['b~'] / speed['a']:.2f}x")
    print(f"  one-time teacher pass for (b): {soft_seconds:.1f} s for {args.rows + 512} rows "
          f"({(args.rows + 512) / soft_seconds:.0f} rows/s); with it, one epoch of (b) runs at "
          f"{args.rows / (args.rows / speed['b'] + soft_seconds * args.rows / (args.rows + 512)):.1f}"
          " examples/s")
    losses = "  ".join(f"({name}) {held_out_loss(students[name], held_batches, alpha, temperature):.4f}"
                       for name in ("a", "b", "b~"))
    print(f"  held-out distillation loss after {args.steps} steps: {losses}")
    print(f"  fp32 matmul: {rate:.1f} GFLOP/s; student training {flops / 1e9:.3f} GFLOP/example; "
          f"(b) reaches {speed['b'] * flops / 1e9:.1f} GFLOP/s = {speed['b'] * flops / 1e9 / rate:.0%}"
          " of it")


if __name__ == "__main__":
    main()
