"""Quality metrics, computed with scikit-learn (offline, unlike `evaluate.load`)."""

from __future__ import annotations

import numpy as np
from scipy.special import softmax
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score


def accuracy_and_f1(labels: np.ndarray, preds: np.ndarray) -> dict[str, float]:
    return {
        "accuracy": float(accuracy_score(labels, preds)),
        "macro_f1": float(f1_score(labels, preds, average="macro", zero_division=0)),
    }


def reliability_bins(
    labels: np.ndarray, probs: np.ndarray, bins: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per equal-width confidence bin: mean confidence, accuracy and row count."""
    confidence = probs.max(-1)
    correct = probs.argmax(-1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    safe = np.maximum(count, 1)
    mean_conf = np.bincount(which, weights=confidence, minlength=bins) / safe
    accuracy = np.bincount(which, weights=correct.astype(float), minlength=bins) / safe
    return mean_conf, accuracy, count


def expected_calibration_error(labels: np.ndarray, probs: np.ndarray, bins: int) -> float:
    """ECE with equal-width confidence bins (Guo et al. 2017)."""
    conf, acc, count = reliability_bins(labels, probs, bins)
    return float((count / count.sum() * np.abs(acc - conf)).sum())


def probabilities(logits: np.ndarray) -> np.ndarray:
    return softmax(logits.astype(np.float64), -1)


def quality(
    labels: np.ndarray, logits: np.ndarray, names: list[str], oos_label: str | None, ece_bins: int
) -> dict[str, float]:
    """Accuracy, macro-F1, ECE; with an out-of-scope label also in-scope accuracy and
    out-of-scope recall / precision (Larson et al. 2019)."""
    preds = logits.argmax(-1)
    out = accuracy_and_f1(labels, preds)
    out["ece"] = expected_calibration_error(labels, probabilities(logits), ece_bins)
    if oos_label and oos_label in names:
        oos = names.index(oos_label)
        in_scope = labels != oos
        out["in_scope_accuracy"] = float((preds[in_scope] == labels[in_scope]).mean())
        is_oos, said_oos = labels == oos, preds == oos
        out["oos_recall"] = float(recall_score(is_oos, said_oos, zero_division=0))
        out["oos_precision"] = float(precision_score(is_oos, said_oos, zero_division=0))
    return out


def agreement(preds_a: np.ndarray, preds_b: np.ndarray) -> float:
    return float((preds_a == preds_b).mean())
