"""Test-set quality, speed and size of the trained models and of their ONNX exports, the
student / teacher ratios, the paired test of distilled student against baseline, and
out-of-scope thresholds chosen on the validation split."""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from datasets import DatasetDict
from transformers import PreTrainedModel

from pipeline import inference, onnx_export, oos, paths, plots, speed
from pipeline.config import Params
from pipeline.inputs import reading
from pipeline.metrics import (
    agreement,
    f1_per_label,
    label_quality,
    probabilities,
    quality,
    reliability_bins,
)
from pipeline.models import count_parameters, load_classifier, load_saved_processor
from pipeline.registry import ROLES, VARIANTS, served_name
from pipeline.significance import mcnemar
from pipeline.tasks import ImageTask, Processor, TextTask, get_task

log = logging.getLogger(__name__)

TOP_CONFUSIONS = 15
# The variant a user ships: metrics.json compares the student in it with the PyTorch teacher.
DEPLOYED = "onnx_int8"


def workspace_models() -> tuple[dict[str, Path], dict[str, Path]]:
    """The workspace's trained model folders, by role, and its ONNX export folders, by
    published role: what the evaluation measures."""
    folders = {role: paths.trained(role) for role in ROLES}
    exports = {role: paths.onnx(role) for role, spec in ROLES.items() if spec.published}
    return folders, exports


def served_models(folders: dict[str, Path], exports: dict[str, Path],
                  task: TextTask | ImageTask,
                  max_length: int) -> dict[str, tuple[inference.Served, Path, int]]:
    """Every model to measure, by served name: (the model, its weights on disk, its parameter
    count). The PyTorch roles, then each exported role in each ONNX variant, with the
    processor saved beside the role's trained model."""
    out, processors = {}, {}
    for role, folder in folders.items():
        with reading(folder, ROLES[role].stage):
            model, processors[role] = load_classifier(folder, task), load_saved_processor(folder)
        out[role] = (inference.pytorch(model, processors[role], task, max_length), folder,
                     count_parameters(model))
    for role, folder in exports.items():
        for variant, spec in VARIANTS.items():
            path = folder / spec.file
            with reading(path, f"export@{role}"):
                served = onnx_export.served(path, processors[role], task, max_length)
            out[served_name(role, variant)] = (served, path, out[role][2])
    return out


def evaluate_models(
    folders: dict[str, Path], ds: DatasetDict, names: list[str], params: Params,
    exports: dict[str, Path] | None = None,
    members: Sequence[tuple[PreTrainedModel, Processor]] = (),
) -> tuple[dict, dict[str, np.ndarray]]:
    """Metrics for each model folder (keyed by role) and for each exported role's ONNX files
    (`exports`: role -> models/onnx/<role>; keyed `<role>_<variant>`), and each one's test
    logits. With ensemble `members` (pipeline.ensemble), `ensemble` is the quality of the mean
    of their logits and the teacher's, the soft targets' source.

    Quality is on the test split; each model's validation accuracy beside it is what settings
    are chosen by. With an out-of-scope label, each model also gets the confidence threshold
    chosen on validation (pipeline.oos) and its test figures with it (`thresholded`).

    Timing figures live under the `speed` key only, so that the rest of the report is the same
    on every run of the same inputs. `numerics` is the precision the PyTorch models ran in, for
    the quality figures and the timings alike (pipeline.inference.serving_numerics); the ONNX
    models run on the CPU, in fp32 or int8 as their names say.
    """
    cfg, max_length, task = params.evaluate, params.data.max_length, get_task(params.task)
    test, validation = ds["test"], ds["validation"]
    inputs, labels = test[task.column], np.asarray(test["label"])
    val_labels = np.asarray(validation["label"])
    oos_label = params.data.oos_label
    oos_id = names.index(oos_label) if oos_label in names else None
    metrics: dict = {}
    timings: dict = {"device": speed.device_name()}
    all_logits: dict[str, np.ndarray] = {}

    def scores(logits: np.ndarray, val_logits: np.ndarray) -> dict:
        val_probs = probabilities(val_logits)
        out = {**quality(labels, logits, names, oos_label, cfg.ece_bins),
               "validation_accuracy": float((val_probs.argmax(-1) == val_labels).mean())}
        if oos_id is not None:
            threshold = oos.choose(val_labels, val_probs, oos_id)
            preds = oos.apply(probabilities(logits), threshold, oos_id)
            out["oos_threshold"] = threshold
            out["thresholded"] = label_quality(labels, preds, names, oos_label)
        return out

    def both_splits(model: inference.Served, name: str) -> tuple[np.ndarray, np.ndarray]:
        return (inference.logits(model, task, inputs, cfg.batch_size, desc=name),
                inference.logits(model, task, validation[task.column], cfg.batch_size,
                                 desc=f"{name} (validation)"))

    served = served_models(folders, exports or {}, task, max_length)
    teacher_logits = None
    for name, (model, path, parameters) in served.items():
        logits, val_logits = both_splits(model, name)
        all_logits[name] = logits
        if name == "teacher":
            teacher_logits = (logits, val_logits)
        metrics[name] = {**scores(logits, val_logits), "parameters": parameters,
                         "size_mb": speed.size_on_disk_mb(path)}
        log.info("%s: %s", name, metrics[name])
    if members:
        # What the soft targets came from: the mean of the teacher's and the members' logits.
        each = [teacher_logits] + [
            both_splits(inference.pytorch(model, processor, task, max_length),
                        f"ensemble member {i + 1}/{len(members)}")
            for i, (model, processor) in enumerate(members)]
        metrics["ensemble"] = {
            **scores(*(np.mean([e[k] for e in each], axis=0, dtype=np.float64) for k in (0, 1))),
            "teachers": len(each)}
        log.info("ensemble: %s", metrics["ensemble"])
    models = {name: model for name, (model, _, _) in served.items()}
    latency = speed.latency_ms(models, inputs, cfg.latency_runs, cfg.latency_warmup,
                               cfg.latency_block, params.seed)
    throughput = speed.throughput(models, inputs, cfg.throughput_batch_size, cfg.latency_block)
    for name in models:
        timings[name] = {**latency[name], "throughput_per_s": throughput[name]}
    teacher, student = metrics["teacher"], metrics["student"]
    preds = {role: x.argmax(-1) for role, x in all_logits.items()}
    metrics["student_vs_teacher"] = {
        "agreement": agreement(preds["student"], preds["teacher"]),
        "accuracy_ratio": student["accuracy"] / max(teacher["accuracy"], 1e-12),
        "parameter_ratio": student["parameters"] / teacher["parameters"],
        "size_ratio": student["size_mb"] / teacher["size_mb"],
    }
    if members:
        metrics["student_vs_ensemble"] = {
            "accuracy_ratio": student["accuracy"] / max(metrics["ensemble"]["accuracy"], 1e-12)}
    metrics["student_vs_baseline"] = mcnemar(
        labels, {"student": preds["student"], "baseline": preds["baseline"]})
    timings["student_speedup"] = (
        timings["teacher"]["latency_ms_median"] / timings["student"]["latency_ms_median"]
    )
    deployed = served_name("student", DEPLOYED)
    if deployed in metrics:
        # What shipping the int8 ONNX student in place of the PyTorch teacher gains and costs.
        metrics["deployed_vs_teacher"] = {
            "model": deployed,
            "size_ratio": metrics[deployed]["size_mb"] / teacher["size_mb"],
            "accuracy_change_vs_student": metrics[deployed]["accuracy"] - student["accuracy"],
        }
        timings["deployed_speedup"] = (
            timings["teacher"]["latency_ms_median"] / timings[deployed]["latency_ms_median"])
        timings["onnx_device"] = f"cpu ({torch.get_num_threads()} threads, ONNX Runtime)"
    metrics["numerics"] = inference.serving_numerics()
    metrics["speed"] = timings
    return metrics, all_logits


# The figures a comparison of runs leads with (pipeline.paths.SUMMARY): test accuracy and
# macro-F1 of every role, and the distilled student's validation accuracy, which settings are
# chosen by. Timings and the per-variant detail stay in metrics.json.
SUMMARY_KEYS = {"student": ("accuracy", "macro_f1", "validation_accuracy"),
                "baseline": ("accuracy", "macro_f1"), "teacher": ("accuracy", "macro_f1")}


def summary(metrics: dict) -> dict:
    """The headline of `metrics` (SUMMARY_KEYS), student first."""
    return {role: {key: metrics[role][key] for key in keys} for role, keys in SUMMARY_KEYS.items()}


def per_class_f1(labels: np.ndarray, preds: dict[str, np.ndarray], names: list[str]) -> list[dict]:
    """One row per label of the test split: its F1 for every model (a DVC plot and a table).

    The rows are the label set of macro-F1 (pipeline.metrics.f1_per_label: the labels that
    occur in the test split), so a model's macro_f1 in metrics.json is the mean of its column.
    """
    scores = {}
    for role, p in preds.items():
        present, scores[role] = f1_per_label(labels, p)
    return [
        {"label": names[label],
         **{f"{role}_f1": round(float(f1[i]), 4) for role, f1 in scores.items()}}
        for i, label in enumerate(present)
    ]


def _write_csv(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def write_figures(
    folder: Path, labels: np.ndarray, logits: dict[str, np.ndarray], names: list[str],
    metrics: dict, params: Params,
) -> None:
    """Tables (csv) and figures (png) of the evaluation into `folder`: the PyTorch roles', and
    every served model's in the accuracy-latency figure."""
    everything, logits = logits, {role: x for role, x in logits.items() if role in ROLES}
    preds = {role: x.argmax(-1) for role, x in logits.items()}
    _write_csv(folder / "confusion_student.csv", [
        {"actual": names[a], "predicted": names[p]}
        for a, p in zip(labels, preds["student"], strict=True)
    ])
    f1_rows = per_class_f1(labels, preds, names)
    _write_csv(folder / "per_class_f1.csv", f1_rows)
    pairs = {role: plots.top_confusions(labels, preds[role], names, TOP_CONFUSIONS)
             for role in ("teacher", "student")}
    confusion_rows = [{"model": role, **row} for role, rows in pairs.items() for row in rows]
    if confusion_rows:
        _write_csv(folder / "top_confusions.csv", confusion_rows)
    plots.confusion_heatmap(labels, preds["student"], names, pairs["student"],
                            folder / "top_confusions.png",
                            f"Distilled student: its {TOP_CONFUSIONS} most frequent confusions")
    plots.per_class_f1_scatter(f1_rows, folder / "per_class_f1.png")
    bins = params.evaluate.ece_bins
    plots.reliability_diagram(
        {role: reliability_bins(labels, probabilities(x), bins) for role, x in logits.items()},
        {role: metrics[role]["ece"] for role in logits},
        folder / "reliability.png",
    )
    speed = metrics["speed"]
    plots.accuracy_vs_latency(
        {name: (speed[name]["latency_ms_median"], metrics[name]["accuracy"],
                metrics[name]["size_mb"]) for name in everything},
        speed["device"], folder / "accuracy_vs_latency.png",
    )
