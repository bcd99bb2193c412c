"""Test-set quality, speed and size of the trained models, and the student / teacher ratios."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from datasets import Dataset
from sklearn.metrics import f1_score

from pipeline import bench
from pipeline.config import Params
from pipeline.inference import predict_logits
from pipeline.metrics import agreement, quality
from pipeline.models import count_parameters, load_classifier, load_tokenizer

log = logging.getLogger(__name__)


def evaluate_models(
    folders: dict[str, Path], test: Dataset, names: list[str], params: Params
) -> tuple[dict, dict[str, np.ndarray]]:
    """Metrics for each model folder (keyed by role) and each model's test predictions.

    Timing figures live under the `speed` key only, so that the rest of the report is the same
    on every run of the same inputs.
    """
    cfg, max_length = params.evaluate, params.data.max_length
    texts, labels = test["text"], np.asarray(test["label"])
    metrics: dict = {}
    speed: dict = {"device": bench.device_name()}
    preds: dict[str, np.ndarray] = {}
    for role, folder in folders.items():
        model, tokenizer = load_classifier(folder), load_tokenizer(str(folder))
        logits = predict_logits(model, tokenizer, texts, cfg.batch_size, max_length, desc=role)
        preds[role] = logits.argmax(-1)
        metrics[role] = {
            **quality(labels, logits, names, params.data.oos_label, cfg.ece_bins),
            "parameters": count_parameters(model),
            "size_mb": bench.size_on_disk_mb(folder),
        }
        speed[role] = {
            **bench.latency_ms(model, tokenizer, texts, cfg.latency_runs, cfg.latency_warmup, max_length),
            "throughput_per_s": bench.throughput(
                model, tokenizer, texts, cfg.throughput_batch_size, max_length
            ),
        }
        log.info("%s: %s", role, metrics[role])
    teacher, student = metrics["teacher"], metrics["student"]
    metrics["student_vs_teacher"] = {
        "agreement": agreement(preds["student"], preds["teacher"]),
        "accuracy_ratio": student["accuracy"] / max(teacher["accuracy"], 1e-12),
        "parameter_ratio": student["parameters"] / teacher["parameters"],
        "size_ratio": student["size_mb"] / teacher["size_mb"],
    }
    speed["student_speedup"] = (
        speed["teacher"]["latency_ms_median"] / speed["student"]["latency_ms_median"]
    )
    metrics["speed"] = speed
    return metrics, preds


def per_class_f1(labels: np.ndarray, preds: dict[str, np.ndarray], names: list[str]) -> list[dict]:
    """One row per label: its F1 for every model (a DVC plot and a table)."""
    scores = {
        role: f1_score(labels, p, labels=range(len(names)), average=None, zero_division=0)
        for role, p in preds.items()
    }
    return [
        {"label": name, **{f"{role}_f1": round(float(s[i]), 4) for role, s in scores.items()}}
        for i, name in enumerate(names)
    ]
