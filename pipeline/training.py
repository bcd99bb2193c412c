"""Fine-tuning with the transformers Trainer: shared by the teacher, baseline and distill stages."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset, DatasetDict
from transformers import (
    DataCollatorWithPadding,
    EvalPrediction,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from pipeline import checkpoints, distributed, paths
from pipeline.config import Params, TrainConfig
from pipeline.jitter import jittered
from pipeline.metrics import accuracy_and_f1
from pipeline.numerics import mixed_precision
from pipeline.outputs import atomic_dir, write_json
from pipeline.tasks import LENGTH, Processor, get_task
from pipeline.tracking import log_metrics, log_params, stage_run, training_callbacks

log = logging.getLogger(__name__)

# Makes a Trainer from the Trainer's keyword arguments: `Trainer` itself, or a subclass with
# its own arguments bound (functools.partial(DistillationTrainer, alpha=..., temperature=...)).
TrainerFactory = Callable[..., Trainer]


class ClassificationCollator:
    """The model inputs of a batch (text padded to the longest row, images stacked), labels, and
    the `carry` columns (such as cached teacher logits) as float tensors.

    Other columns (idx, length) stay out of the batch, so the model sees only what it takes.
    """

    def __init__(self, processor: Processor, carry: tuple[str, ...] = ()) -> None:
        self.inputs = set(processor.model_input_names)
        self.carry = carry
        self.pad = (DataCollatorWithPadding(processor)
                    if isinstance(processor, PreTrainedTokenizerBase) else None)

    def __call__(self, features: list[dict]) -> dict:
        if self.pad is not None:
            batch = self.pad([{k: f[k] for k in self.inputs if k in f} for f in features])
        else:
            batch = {k: torch.tensor(np.array([f[k] for f in features]), dtype=torch.float32)
                     for k in self.inputs if k in features[0]}
        batch["labels"] = torch.tensor([f["label"] for f in features], dtype=torch.long)
        for column in self.carry:
            batch[column] = torch.tensor(np.array([f[column] for f in features]),
                                         dtype=torch.float32)
        return batch


def _compute_metrics(pred: EvalPrediction) -> dict:
    logits = pred.predictions[0] if isinstance(pred.predictions, tuple) else pred.predictions
    return accuracy_and_f1(pred.label_ids, logits.argmax(-1))


def training_arguments(
    cfg: TrainConfig, seed: int, output_dir: str | Path, run_name: str,
    group_by_length: bool = True,
) -> TrainingArguments:
    cuda = torch.cuda.is_available()
    precision = mixed_precision()
    return TrainingArguments(
        output_dir=output_dir,
        run_name=run_name,
        num_train_epochs=cfg.epochs,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.eval_batch_size,
        learning_rate=cfg.learning_rate,
        weight_decay=cfg.weight_decay,
        warmup_steps=cfg.warmup_ratio,
        eval_strategy="epoch",
        logging_strategy="epoch",
        # One checkpoint per epoch, the last only: what a killed stage resumes from.
        save_strategy="epoch",
        save_total_limit=1,
        seed=seed,
        data_seed=seed,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        train_sampling_strategy="group_by_length" if group_by_length else "random",
        length_column_name=LENGTH,
        remove_unused_columns=False,
        report_to="none",
        dataloader_num_workers=0,
        dataloader_pin_memory=cuda,
        # Without use_cpu, Accelerate gives processes on a machine without a GPU no process
        # group, and each would train alone. A backend set for one process fails.
        use_cpu=not cuda,
        ddp_backend=("nccl" if cuda else "gloo") if distributed.world_size() > 1 else None,
        # On, the Trainer multiplies each process's loss by the process count, expecting a loss
        # summed over tokens and divided by the global count; a classifier's loss is the batch
        # mean (it ignores the count), so training and validation losses came out doubled.
        average_tokens_across_devices=False,
        # Every trainable weight gets a gradient each step, the hidden_mse projection too,
        # which runs outside the model's forward, where DDP's search for unused ones would
        # count it unused and then fail when its gradient arrives.
        ddp_find_unused_parameters=False,
    )


def train_classifier(
    model: PreTrainedModel,
    processor: Processor,
    train: Dataset,
    validation: Dataset,
    args: TrainingArguments,
    callbacks: list[TrainerCallback],
    resume_from: Path | None = None,
    make_trainer: TrainerFactory = Trainer,
    carry: tuple[str, ...] = (),
    fit: bool = True,
) -> dict:
    """Train in place; return the final validation metrics and the training time.

    Checkpoints go to `args.output_dir` each epoch; `resume_from` is one of them to continue.
    `carry` names dataset columns the Trainer's loss reads (the distillation's teacher logits).
    With `fit` false the model is only evaluated (an already fine-tuned teacher).
    """
    run_name = args.run_name
    trainer = make_trainer(
        model=model,
        args=args,
        train_dataset=train,
        eval_dataset=validation,
        data_collator=ClassificationCollator(processor, carry),
        processing_class=processor,
        compute_metrics=_compute_metrics,
        callbacks=callbacks,
    )
    start = time.perf_counter()
    if fit:
        if resume_from is not None:
            log.info("%s: resuming from %s", run_name, resume_from)
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
        # The last epoch's evaluation; evaluating again would log a duplicate point.
        final = [e for e in trainer.state.log_history if "eval_loss" in e][-1]
    else:
        final = trainer.evaluate()
    seconds = time.perf_counter() - start
    log.info("%s: trained in %.1f s, validation %s", run_name, seconds, final)
    validation = {
        "accuracy": final["eval_accuracy"],
        "macro_f1": final["eval_macro_f1"],
        # Cross-entropy for every model, whatever it was trained on.
        "cross_entropy": final["eval_loss"],
    }
    if "eval_distillation_loss" in final:
        validation["distillation_loss"] = final["eval_distillation_loss"]
    return {
        "validation": validation,
        # Timing varies run to run; it lives under its own key so the rest compares exactly.
        "timing": {"train_seconds": seconds, "device": str(args.device)},
        # A result depends on the global batch; processes x per-device batch says how it ran.
        "batch": {"per_device": args.per_device_train_batch_size, "processes": args.world_size,
                  "global": global_batch(args)},
        "history": epoch_history(trainer.state.log_history),
    }


def global_batch(args: TrainingArguments) -> int:
    """Training rows per optimizer step, over every process (and GPU) of the run."""
    return args.train_batch_size * args.world_size * args.gradient_accumulation_steps


# Trainer log keys -> per-epoch history columns. "loss" is the training objective of the
# stage (the distillation loss for the distilled student); validation loss is cross-entropy.
HISTORY_KEYS = {"loss": "training_loss", "eval_loss": "validation_cross_entropy",
                "eval_distillation_loss": "validation_distillation_loss",
                "eval_accuracy": "validation_accuracy", "eval_macro_f1": "validation_macro_f1"}


def epoch_history(log_history: list[dict]) -> list[dict]:
    """The Trainer's log as one row per epoch: training loss and validation metrics."""
    rows: dict[int, dict] = {}
    for entry in log_history:
        if "epoch" not in entry or "train_runtime" in entry:
            continue
        row = rows.setdefault(round(entry["epoch"]), {"epoch": round(entry["epoch"])})
        row["step"] = entry.get("step", row.get("step"))
        for key, name in HISTORY_KEYS.items():
            if key in entry:
                row[name] = entry[key]
    return [rows[k] for k in sorted(rows)]


def fit_and_save(
    stage: str,
    role: str,
    params: Params,
    model: PreTrainedModel,
    processor: Processor,
    ds: DatasetDict,
    cfg: TrainConfig,
    source: dict,
    make_trainer: TrainerFactory = Trainer,
    carry: tuple[str, ...] = (),
    fit: bool = True,
    jitter: int = 0,
    seed: int | None = None,
    live: Path | None = None,
) -> dict:
    """A training stage's work: train with tracking, then write models/trained/<role>,
    reports/<role>.json and reports/live/<stage>/history.json (each whole or not at all).

    Under torchrun every process trains its share and rank 0 alone writes and tracks.
    `source` says where the model's starting weights came from (a Hub id and commit, or none);
    the report keeps it, so that the card can name them exactly. `jitter` shifts each training
    image by up to that many pixels (pipeline/jitter.py). `seed` (default: the role's) and `live`
    (default: reports/live/<stage>) are for stages that train several models."""
    distributed.check_launch(params.distributed)
    task = get_task(params.task)
    encoded = task.encode(ds, processor, params.data.max_length)
    checkpoint_dir = paths.checkpoints(stage)
    live = live or paths.LIVE / stage
    args = training_arguments(cfg, params.seed_of(role) if seed is None else seed,
                              checkpoint_dir, stage,
                              task.group_by_length)
    stamp = checkpoints.fingerprint(stage, params, global_batch(args), model, encoded["train"],
                                    encoded["validation"])
    resume_from = None
    if fit:
        # Rank 0 clears stale checkpoints first; the others then find what it kept.
        with args.main_process_first(local=False, desc="checkpoint lookup"):
            lookup = checkpoints.latest if distributed.is_main() else checkpoints.find
            resume_from = lookup(checkpoint_dir, stamp)
    train = jittered(encoded["train"], jitter) if jitter else encoded["train"]
    with stage_run(stage, params), training_callbacks(live) as callbacks:
        report = train_classifier(
            model, processor, train, encoded["validation"], args, callbacks,
            resume_from=resume_from, make_trainer=make_trainer, carry=carry, fit=fit,
        )
        history = report.pop("history")
        # How the run was batched is a setting, not a result.
        log_params({"batch": report["batch"]})
        log_metrics({k: v for k, v in report.items() if k != "batch"})
    if not distributed.is_main():
        return report
    report["model_source"] = source
    with atomic_dir(paths.trained(role)) as folder:
        model.save_pretrained(folder)
        processor.save_pretrained(folder)
    write_json(paths.REPORTS / f"{role}.json", report)
    # Per-epoch rows for the model card's training-results table.
    write_json(live / "history.json", {"epochs": history})
    checkpoints.clear(checkpoint_dir)
    return report
