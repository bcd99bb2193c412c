"""Whether one model's test predictions beat another's by more than chance: the exact McNemar
test on the queries where exactly one of the two is right."""

from __future__ import annotations

import numpy as np
from scipy.stats import binomtest


def mcnemar(labels: np.ndarray, preds: dict[str, np.ndarray]) -> dict:
    """Paired comparison of two models (`preds`: name -> predictions, the first against the
    second) on the same queries: the accuracy gain, how many queries only each gets right, and
    the two-sided exact McNemar p-value (a binomial test of those discordant pairs at 1/2)."""
    (a, preds_a), (b, preds_b) = preds.items()
    right_a, right_b = preds_a == labels, preds_b == labels
    only_a, only_b = int((right_a & ~right_b).sum()), int((right_b & ~right_a).sum())
    p = binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
    return {"accuracy_gain": float(right_a.mean() - right_b.mean()),
            f"only_{a}_right": only_a, f"only_{b}_right": only_b, "mcnemar_p": float(p)}
