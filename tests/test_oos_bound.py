"""The bound bench/oos_scores.py prints (the best in-scope accuracy any threshold reaches at a
given out-of-scope recall) against a hand computation and a brute force over thresholds."""

import numpy as np
import pytest

from bench.oos_scores import best_in_scope

OOS = 2


def brute_force(labels: np.ndarray, score: np.ndarray, preds: np.ndarray, recall: float) -> float:
    inside = labels != OOS
    best = float("nan")
    for t in [*np.unique(score), np.inf]:
        out = np.where(score < t, OOS, preds)
        if (out[~inside] == OOS).mean() >= recall:
            acc = (out[inside] == labels[inside]).mean()
            best = acc if np.isnan(best) else max(best, acc)
    return best


def test_bound_by_hand():
    # Scores 0.1 (oos query), 0.2 (right), 0.3 (oos query), 0.9 (right). Recall 1 needs both
    # oos queries below the threshold, so the query at 0.2 goes too: in-scope 1/2. Recall 0.5
    # needs only the first: in-scope 2/2.
    score = np.array([0.1, 0.2, 0.3, 0.9])
    labels = np.array([OOS, 0, OOS, 1])
    preds = np.array([0, 0, 1, 1])
    assert best_in_scope(labels, score, preds, OOS, 1.0) == 0.5
    assert best_in_scope(labels, score, preds, OOS, 0.5) == 1.0


@pytest.mark.parametrize("seed", range(20))
def test_bound_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    # Rounded so that scores tie: a threshold cannot split a tie.
    score = rng.random(40).round(1)
    labels = rng.integers(0, 3, size=40)
    preds = rng.integers(0, 3, size=40)
    for recall in (0.3, 0.7, 1.0):
        expected = brute_force(labels, score, preds, recall)
        got = best_in_scope(labels, score, preds, OOS, recall)
        assert got == pytest.approx(expected, nan_ok=True)
