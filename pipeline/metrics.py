"""Quality metrics: the project's intent metric set (pipeline/intent_metrics, an `evaluate`
module with scikit-learn underneath) and what the tables and figures need beside it."""

from __future__ import annotations

import tempfile

import numpy as np
from scipy.special import softmax

from pipeline.intent_metrics.intent_metrics import (
    IntentMetrics,
    accuracy_and_f1,
    f1_per_label,
    reliability_bins,
)

__all__ = ["accuracy_and_f1", "agreement", "f1_per_label", "label_quality", "probabilities",
           "quality", "reliability_bins"]


def probabilities(logits: np.ndarray) -> np.ndarray:
    return softmax(logits.astype(np.float64), -1)


def quality(
    labels: np.ndarray, logits: np.ndarray, names: list[str], oos_label: str | None, ece_bins: int
) -> dict[str, float]:
    """The intent metric set of a model's test logits: accuracy, macro-F1, ECE; with an
    out-of-scope label also in-scope accuracy and out-of-scope recall / precision.

    The module is the one `evaluate.load("pipeline/intent_metrics")` gives, imported in place
    rather than through evaluate's copy of it in the modules cache: nothing here depends on the
    state of that cache.
    """
    oos = names.index(oos_label) if oos_label and oos_label in names else None
    # evaluate makes a folder for its cache files even when it keeps the data in memory; a
    # temporary one leaves ~/.cache alone, so that a read-only HOME works.
    with tempfile.TemporaryDirectory() as cache:
        metric = IntentMetrics(keep_in_memory=True, cache_dir=cache)
        return metric.compute(predictions=logits.argmax(-1), references=labels,
                              prediction_scores=probabilities(logits), oos_label_id=oos,
                              ece_bins=ece_bins)


def label_quality(
    labels: np.ndarray, preds: np.ndarray, names: list[str], oos_label: str | None
) -> dict[str, float]:
    """The intent metric set of predictions alone (no probabilities, so no ECE): the figures
    of a model whose answers are changed after the softmax, as by an out-of-scope threshold."""
    oos = names.index(oos_label) if oos_label and oos_label in names else None
    with tempfile.TemporaryDirectory() as cache:
        metric = IntentMetrics(config_name="labels_only", keep_in_memory=True, cache_dir=cache)
        return metric.compute(predictions=preds, references=labels, oos_label_id=oos)


def agreement(preds_a: np.ndarray, preds_b: np.ndarray) -> float:
    return float((preds_a == preds_b).mean())
