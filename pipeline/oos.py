"""Out-of-scope detection by a confidence threshold (Larson et al. 2019): a query whose top
softmax probability falls below the threshold is answered with the out-of-scope label.

The threshold is chosen on the validation split by Larson et al.'s rule, the one with the best
validation accuracy with out-of-scope as a class of its own, and only applied to the test split.
"""

from __future__ import annotations

import numpy as np


def apply(probs: np.ndarray, threshold: float, oos: int) -> np.ndarray:
    """Predictions: the most probable label, or `oos` where its probability is below
    `threshold`."""
    preds = probs.argmax(-1)
    return np.where(probs.max(-1) < threshold, oos, preds)


def choose(labels: np.ndarray, probs: np.ndarray, oos: int) -> float:
    """The threshold with the best accuracy on (`labels`, `probs`); on a tie the lowest, which
    turns the fewest queries away. 0.0 means no threshold helps."""
    return best_threshold(labels, probs.max(-1), probs.argmax(-1), oos, none=0.0)


def best_threshold(labels: np.ndarray, score: np.ndarray, preds: np.ndarray, oos: int,
                   none: float) -> float:
    """Larson's rule for any confidence `score` of the predictions `preds`: the threshold below
    which turning queries out-of-scope gives the best accuracy, the lowest on a tie; `none`
    (at or below every score) when no threshold helps."""
    # Every distinct threshold is one of the scores: below it, the queries whose score is
    # lower turn out-of-scope. Sorted by score, the first k queries do.
    order = np.argsort(score, kind="stable")
    score, labels, preds = score[order], labels[order], preds[order]
    right_if_oos = np.concatenate([[0], np.cumsum(labels == oos)])
    right_as_is = np.concatenate([np.cumsum((preds == labels)[::-1])[::-1], [0]])
    candidates = np.concatenate([[none], np.unique(score)])
    k = np.searchsorted(score, candidates, side="left")
    correct = right_if_oos[k] + right_as_is[k]
    return float(candidates[int(np.argmax(correct))])
