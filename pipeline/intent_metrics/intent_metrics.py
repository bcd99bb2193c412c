"""Intent classification metrics: accuracy, macro-F1, expected calibration error and, with an
out-of-scope label, in-scope accuracy and out-of-scope recall and precision.

A Hugging Face `evaluate` module with scikit-learn underneath, self-contained so that it loads
by path anywhere: `evaluate.load("path/to/intent_metrics")`. The distill-pipeline evaluation
computes its figures with this file too.
"""

from __future__ import annotations

import datasets
import evaluate
import numpy as np
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

# No number sign inside a string literal in this file: evaluate.load keys its cached copy of the
# file on the code with everything after one dropped, so an edit behind it would load a stale copy.

_DESCRIPTION = """
The quality figures of an intent classifier, one call for all of them:

- accuracy;
- macro-F1: the unweighted mean of the F1 of every label that occurs in the references. A label
  absent from the references has no F1 (no query to get right or wrong) and is left out; a
  prediction of such a label still counts, as a miss of the query's true label;
- ece: expected calibration error with equal-width confidence bins (Guo et al. 2017), from
  `prediction_scores` (not with the "labels_only" configuration);
- with `oos_label_id`, the out-of-scope view of Larson et al. 2019: in_scope_accuracy (accuracy
  on the queries whose reference is not out-of-scope), oos_recall and oos_precision (of the
  out-of-scope label against all the others).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): predicted label ids.
    references (`list` of `int`): true label ids.
    prediction_scores (`list` of `list` of `float`): per query, the probability of every label
        (softmax of the logits). ECE is computed from them: a query's confidence is its largest
        probability, and it counts as correct when that label is the reference. Not taken by
        the "labels_only" configuration, `evaluate.load(path, "labels_only")`, which leaves
        ECE out.
    oos_label_id (`int`, optional): the id of the out-of-scope label, if the label set has one.
    ece_bins (`int`, defaults to 15): number of equal-width confidence bins of the ECE.

Returns:
    accuracy, macro_f1, ece (not with "labels_only"), and with `oos_label_id` in_scope_accuracy,
    oos_recall and oos_precision: floats in [0, 1].

Examples:
    >>> import evaluate
    >>> metric = evaluate.load("pipeline/intent_metrics", "labels_only")
    >>> metric.compute(predictions=[0, 1, 1, 2], references=[0, 1, 2, 2], oos_label_id=1)
    {'accuracy': 0.75, 'macro_f1': 0.7777777777777777, 'in_scope_accuracy': 0.6666666666666666,
     'oos_recall': 1.0, 'oos_precision': 0.5}
"""

_CITATION = """
@inproceedings{larson-etal-2019-evaluation,
    title = "An Evaluation Dataset for Intent Classification and Out-of-Scope Prediction",
    author = "Larson, Stefan and Mahendran, Anish and Peper, Joseph J. and Clarke, Christopher
        and Lee, Andrew and Hill, Parker and Kummerfeld, Jonathan K. and Leach, Kevin
        and Laurenzano, Michael A. and Tang, Lingjia and Mars, Jason",
    booktitle = "Proceedings of EMNLP-IJCNLP 2019",
    year = "2019",
    pages = "1311--1316",
    url = "https://aclanthology.org/D19-1131",
}
@inproceedings{guo2017calibration,
    title = "On Calibration of Modern Neural Networks",
    author = "Guo, Chuan and Pleiss, Geoff and Sun, Yu and Weinberger, Kilian Q.",
    booktitle = "Proceedings of the 34th International Conference on Machine Learning",
    year = "2017",
    pages = "1321--1330",
}
"""

_IDS = {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
# Inputs by configuration: "default" takes the scores that ECE needs; "labels_only" serves
# classifiers that give a label and no probabilities, and leaves ECE out.
_FEATURES = {
    "default": {**_IDS, "prediction_scores": datasets.Sequence(datasets.Value("float64"))},
    "labels_only": _IDS,
}


def f1_per_label(labels: np.ndarray, preds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The labels that occur in `labels` (sorted) and the F1 of each: the label set of
    macro-F1, whose mean it is."""
    present = np.unique(labels)
    return present, f1_score(labels, preds, labels=present, average=None, zero_division=0)


def accuracy_and_f1(labels: np.ndarray, preds: np.ndarray) -> dict[str, float]:
    """Accuracy and macro-F1 (over the labels that occur in `labels`, see f1_per_label)."""
    return {
        "accuracy": float(accuracy_score(labels, preds)),
        "macro_f1": float(f1_per_label(labels, preds)[1].mean()),
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


def out_of_scope_scores(labels: np.ndarray, preds: np.ndarray, oos: int) -> dict[str, float]:
    """In-scope accuracy, out-of-scope recall and precision (Larson et al. 2019)."""
    in_scope = labels != oos
    is_oos, said_oos = labels == oos, preds == oos
    return {
        "in_scope_accuracy": float((preds[in_scope] == labels[in_scope]).mean()),
        "oos_recall": float(recall_score(is_oos, said_oos, zero_division=0)),
        "oos_precision": float(precision_score(is_oos, said_oos, zero_division=0)),
    }


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class IntentMetrics(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        if self.config_name not in _FEATURES:
            raise ValueError(f"unknown configuration '{self.config_name}' of intent_metrics: "
                             f"use one of {sorted(_FEATURES)}")
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(_FEATURES[self.config_name]),
            reference_urls=[
                "https://aclanthology.org/D19-1131",
                "https://proceedings.mlr.press/v70/guo17a.html",
            ],
        )

    def _compute(
        self,
        predictions: list[int],
        references: list[int],
        prediction_scores: list[list[float]] | None = None,
        oos_label_id: int | None = None,
        ece_bins: int = 15,
    ) -> dict[str, float]:
        labels, preds = np.asarray(references), np.asarray(predictions)
        out = accuracy_and_f1(labels, preds)
        if prediction_scores is not None:
            probs = np.asarray(prediction_scores, dtype=np.float64)
            out["ece"] = expected_calibration_error(labels, probs, ece_bins)
        if oos_label_id is not None:
            out.update(out_of_scope_scores(labels, preds, oos_label_id))
        return out
