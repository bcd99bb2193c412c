"""Training speed of distillation: the usual way against this project's distill stage.

    python -m bench.distill_throughput            # a 3,000-row slice of CLINC150, 60 steps each

On one machine, the same data, teacher, student, batch size and optimizer steps, it times
  (a)  the usual way: the teacher runs forward on every step, shuffled batches,
       DataCollatorWithPadding (bench/usual_distillation.py);
  (a') the same with every batch padded to max_length 64, as many blog versions do;
  (b)  the distill stage's code path: teacher logits computed once (soft_targets), dynamic
       padding, length-grouped batches, tokens cached by `datasets`;
  (b*) the same with the student's word embeddings frozen (an experiment, not a stage option:
       whether the speed is worth an accuracy check);
  (c)  the floor: the student's forward + backward + optimizer step alone on (b)'s batches;
and prints examples/s, the ratios, the distillation loss of (a) and (b) on held-out rows after
the same steps, and the share of the CPU's fp32 matmul rate that (b) reaches.

The default teacher is the pretrained MiniLM-L6 with a new classification head: speed does not
depend on its training. `--teacher models/trained/teacher` uses a fine-tuned one.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import logging
import tempfile
import time
from pathlib import Path

import torch
from datasets import DatasetDict
from transformers import DataCollatorWithPadding, Trainer, TrainingArguments, set_seed
from transformers.utils import logging as hf_logging

from bench.usual_distillation import OnlineDistillationTrainer
from pipeline import soft_targets
from pipeline.config import DataConfig, TeacherConfig, TrainConfig
from pipeline.data import prepare_dataset
from pipeline.distill import TEACHER_LOGITS, DistillationTrainer, distillation_loss
from pipeline.models import build_teacher, load_tokenizer, resolve, student_from_teacher
from pipeline.tasks import TextTask
from pipeline.training import ClassificationCollator, training_arguments

CLINC = Path(__file__).parents[1].parent / "shared/data/clinc150/data_oos_plus.json"


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
    parser.add_argument("--source", default=str(CLINC))
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--teacher", default="minilm-l6",
                        help="a model name/path; a fine-tuned teacher folder works too")
    parser.add_argument("--layers", default="0,2,4")
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--temperature", type=float, default=4.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    hf_logging.set_verbosity_error()
    set_seed(0)

    ds, names = prepare_dataset(DataConfig(source=args.source), seed=0)
    train = ds["train"].shuffle(seed=0).select(range(args.rows))
    held = ds["validation"].shuffle(seed=0).select(range(512))
    tokenizer = load_tokenizer(resolve(args.teacher))
    teacher = build_teacher(TeacherConfig(model=args.teacher, finetune=True), names).eval()
    student0 = student_from_teacher(teacher, [int(i) for i in args.layers.split(",")])

    start = time.perf_counter()
    text = TextTask()
    soft = soft_targets.compute(teacher, tokenizer, text, {"train": train, "validation": held},
                                128, 64)
    soft_seconds = time.perf_counter() - start
    encoded = text.encode(DatasetDict({"train": soft_targets.attach(train, soft["train"]),
                                       "validation": soft_targets.attach(held, soft["validation"])}),
                          tokenizer, 64)
    mean_tokens = sum(encoded["train"]["length"]) / len(encoded["train"])
    plain = encoded["train"].select_columns(["input_ids", "token_type_ids", "attention_mask",
                                             "label"])
    collate = ClassificationCollator(tokenizer)
    held_batches = [collate([encoded["validation"][j] for j in range(i, i + 64)])
                    for i in range(0, 512, 64)]
    cfg = TrainConfig(epochs=1, batch_size=args.batch_size, learning_rate=1e-4)
    warm_up(student0, [collate([encoded["train"][j] for j in range(args.batch_size)])] * 3)
    results, students = {}, {}

    with tempfile.TemporaryDirectory() as scratch:
        def usual_args() -> TrainingArguments:
            return TrainingArguments(
                output_dir=scratch, max_steps=args.steps, per_device_train_batch_size=args.batch_size,
                learning_rate=1e-4, weight_decay=0.01, warmup_steps=0.1, seed=0, report_to="none",
                save_strategy="no", logging_strategy="no", disable_tqdm=True)

        for name, pad in (("a", DataCollatorWithPadding(tokenizer)),
                          ("a'", DataCollatorWithPadding(tokenizer, padding="max_length",
                                                         max_length=64))):
            students[name] = copy.deepcopy(student0)
            results[name], _ = timed(OnlineDistillationTrainer(
                model=students[name], args=usual_args(), train_dataset=plain, data_collator=pad,
                teacher_model=teacher, alpha=args.alpha, temperature=args.temperature))

        stage_args = dataclasses.replace(
            training_arguments(cfg, 0, scratch, "bench"), max_steps=args.steps,
            eval_strategy="no", save_strategy="no", logging_strategy="no", disable_tqdm=True)
        students["b"] = copy.deepcopy(student0)
        results["b"], trainer_b = timed(DistillationTrainer(
            model=students["b"], args=stage_args, train_dataset=encoded["train"],
            data_collator=collate, processing_class=tokenizer, alpha=args.alpha,
            temperature=args.temperature))
        students["b*"] = copy.deepcopy(student0)
        # The Trainer's optimizer leaves out parameters that need no gradient.
        students["b*"].get_input_embeddings().weight.requires_grad_(False)
        results["b*"], _ = timed(DistillationTrainer(
            model=students["b*"], args=stage_args, train_dataset=encoded["train"],
            data_collator=collate, processing_class=tokenizer, alpha=args.alpha,
            temperature=args.temperature))

        # (c): the same batches, no Trainer, no distillation loss.
        floor = copy.deepcopy(student0).train()
        # The Trainer's own optimizer choice (fused AdamW on torch 2.13), so only the loop differs.
        optimizer_cls, optimizer_kwargs = Trainer.get_optimizer_cls_and_kwargs(stage_args)
        optimizer = optimizer_cls(floor.parameters(), **optimizer_kwargs)
        batches = []
        for batch in trainer_b.get_train_dataloader():
            batches.append({k: v for k, v in batch.items() if k != TEACHER_LOGITS})
            if len(batches) == args.steps:
                break
        start = time.perf_counter()
        for batch in batches:
            floor(**batch).loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        results["c"] = time.perf_counter() - start

    speed = {k: args.steps * args.batch_size / v for k, v in results.items()}
    rate = matmul_gflops()
    flops = train_flops_per_example(student0, mean_tokens)
    print(f"device: cpu x {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"data: {args.rows} CLINC150 train rows (mean {mean_tokens:.1f} tokens), "
          f"{args.steps} steps of {args.batch_size}; teacher {args.teacher}, "
          f"student layers {args.layers}")
    for name, label in (("a", "usual: online teacher, shuffled, dynamic padding"),
                        ("a'", "usual, padded to 64"),
                        ("b", "this project's distill stage"),
                        ("b*", "(b) with the word embeddings frozen"),
                        ("c", "floor: student fwd+bwd+step only")):
        print(f"  ({name:2s}) {label:52s} {speed[name]:8.1f} examples/s")
    a_fixed = speed["a'"]
    print(f"  b/a = {speed['b'] / speed['a']:.2f}x   b/a' = {speed['b'] / a_fixed:.2f}x   "
          f"b/c = {speed['b'] / speed['c']:.2f} (c/b = {speed['c'] / speed['b']:.2f}x)")
    print(f"  b*/a = {speed['b*'] / speed['a']:.2f}x   b*/b = {speed['b*'] / speed['b']:.2f}x")
    print(f"  one-time teacher pass for (b): {soft_seconds:.1f} s for {args.rows + 512} rows "
          f"({(args.rows + 512) / soft_seconds:.0f} rows/s); with it, one epoch of (b) runs at "
          f"{args.rows / (args.rows / speed['b'] + soft_seconds * args.rows / (args.rows + 512)):.1f}"
          " examples/s")
    print(f"  held-out distillation loss after {args.steps} steps: "
          f"(a) {held_out_loss(students['a'], held_batches, args.alpha, args.temperature):.4f}  "
          f"(b) {held_out_loss(students['b'], held_batches, args.alpha, args.temperature):.4f}  "
          f"(b*) {held_out_loss(students['b*'], held_batches, args.alpha, args.temperature):.4f}")
    print(f"  fp32 matmul: {rate:.1f} GFLOP/s; student training {flops / 1e9:.3f} GFLOP/example; "
          f"(b) reaches {speed['b'] * flops / 1e9:.1f} GFLOP/s = {speed['b'] * flops / 1e9 / rate:.0%}"
          " of it")


if __name__ == "__main__":
    main()
