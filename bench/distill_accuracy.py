"""Test accuracy of the usual way of distilling against this project's distill stage, full run.

    cp configs/clinc150.yaml params.yaml && dvc repro distill   # the teacher, (b)
    python -m bench.distill_accuracy                            # trains (a), scores both

(b) is models/trained/student, written by the distill stage from params.yaml. (a) is trained
here the usual way (bench/usual_distillation.py: models/trained/teacher runs forward on every
step, shuffled batches, DataCollatorWithPadding, every student weight trained) from the same
initial student, with the same epochs, batch size, learning rate, schedule, seed and per-epoch
evaluation as the stage. Both are scored on the test split of data/prepared. It prints test
accuracy and macro F1 of both, their difference, and the training time of each, and writes
them to reports/bench/distill_accuracy.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from functools import partial
from pathlib import Path

from datasets import DatasetDict
from transformers import DataCollatorWithPadding, set_seed

from bench.usual_distillation import OnlineDistillationTrainer
from pipeline import paths
from pipeline.config import load_params
from pipeline.inference import predict_logits
from pipeline.metrics import accuracy_and_f1
from pipeline.models import load_classifier, load_student, load_trained
from pipeline.outputs import write_json
from pipeline.prepared import load_prepared
from pipeline.tasks import get_task
from pipeline.training import training_arguments

OUT = paths.REPORTS / "bench" / "distill_accuracy.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    params = load_params(paths.PARAMS)
    task = get_task(params.task)
    for needed in (paths.PREPARED, paths.trained("teacher"), paths.trained("student"),
                   paths.REPORTS / "student.json"):
        if not needed.exists():
            raise SystemExit(f"{needed} is missing: run `dvc repro distill` first.")
    set_seed(params.seed)
    ds, names = load_prepared(paths.PREPARED)
    usual_cfg = params.student.model_copy(update={"freeze_word_embeddings": False})
    student, processor = load_student(usual_cfg, names,
                                       partial(load_trained, "teacher", task),
                                       task, ds["train"])
    teacher = load_classifier(paths.trained("teacher"), task)
    keep = [*processor.model_input_names, "label"]
    encoded = task.encode(DatasetDict(train=ds["train"], validation=ds["validation"]), processor,
                          params.data.max_length)
    encoded = DatasetDict({split: encoded[split].select_columns(keep) for split in encoded})

    with tempfile.TemporaryDirectory() as scratch:
        usual_args = training_arguments(params.student.train, params.seed, scratch, "usual",
                                        group_by_length=False)
        trainer = OnlineDistillationTrainer(
            model=student, args=usual_args, train_dataset=encoded["train"],
            eval_dataset=encoded["validation"], data_collator=DataCollatorWithPadding(processor),
            teacher_model=teacher, alpha=params.alpha, temperature=params.temperature)
        start = time.perf_counter()
        trainer.train()
        usual_seconds = time.perf_counter() - start

    test = ds["test"]
    scores = {}
    for name, model in (("a", student), ("b", load_classifier(paths.trained("student"), task))):
        logits = predict_logits(model, processor, task, test[task.column],
                                params.evaluate.batch_size, params.data.max_length, desc=name)
        scores[name] = accuracy_and_f1(test["label"], logits.argmax(-1))
    stage_seconds = json.loads((paths.REPORTS / "student.json").read_text())["timing"][
        "train_seconds"]
    report = {
        "a_usual": {**scores["a"], "train_seconds": usual_seconds},
        "b_distill_stage": {**scores["b"], "train_seconds": stage_seconds,
                            "freeze_word_embeddings": params.student.freeze_word_embeddings},
        "accuracy_difference_points": 100 * (scores["b"]["accuracy"] - scores["a"]["accuracy"]),
        "epochs": params.student.train.epochs,
        "test_rows": len(test),
    }
    write_json(args.out, report)
    print(f"{len(test)} test rows, {params.student.train.epochs:g} epochs")
    for name, label, seconds in (("a", "usual (online teacher)", usual_seconds),
                                 ("b", "distill stage", stage_seconds)):
        print(f"  ({name}) {label:24s} accuracy {scores[name]['accuracy']:.4f}  "
              f"macro F1 {scores[name]['macro_f1']:.4f}  trained in {seconds / 60:.1f} min")
    print(f"  b - a = {report['accuracy_difference_points']:+.2f} accuracy points; "
          f"(a) took {usual_seconds / stage_seconds:.2f}x the time of (b); written to {args.out}")


if __name__ == "__main__":
    main()
