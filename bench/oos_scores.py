"""Which confidence score, thresholded by Larson et al.'s rule on the validation split, detects
out-of-scope queries best on test: max softmax (what pipeline.oos uses), max softmax at
temperature 2 and 4, max logit, energy (logsumexp) and the top-2 logit margin.

Run in a workspace after `dvc repro` (teacher, baseline, distilled student and, with
soft_targets.ensemble_seeds, the teachers' mean):

    python -m bench.oos_scores

It prints, per model and score, validation accuracy (what the rule maximises; ranking by it is
what choosing a score on validation would do), then test accuracy, in-scope accuracy and
out-of-scope recall with the threshold applied. Its last column is a bound, not a rule: the best
test in-scope accuracy that any threshold of the score reaches while keeping test out-of-scope
recall at RECALL or above (chosen on test, so no threshold chosen on validation can do better).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.special import logsumexp, softmax

from pipeline import ensemble, inference, oos, paths
from pipeline.config import load_params
from pipeline.evaluation import workspace_models
from pipeline.models import load_classifier, load_saved_processor
from pipeline.prepared import load_prepared
from pipeline.tasks import get_task

SPLITS = ("validation", "test")
RECALL = 0.70
SCORES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "max softmax": lambda z: softmax(z, -1).max(-1),
    "max softmax, T 2": lambda z: softmax(z / 2, -1).max(-1),
    "max softmax, T 4": lambda z: softmax(z / 4, -1).max(-1),
    "max logit": lambda z: z.max(-1),
    "energy": lambda z: logsumexp(z, -1),
    "top-2 margin": lambda z: np.diff(np.sort(z, -1)[:, -2:], axis=-1)[:, 0],
}


def best_in_scope(labels: np.ndarray, score: np.ndarray, preds: np.ndarray, oos_id: int,
                  recall: float) -> float:
    """The best in-scope accuracy over every threshold of `score` whose out-of-scope recall is
    at least `recall` (nan if none reaches it)."""
    order = np.argsort(score, kind="stable")
    score, labels, preds = score[order], labels[order], preds[order]
    inside = labels != oos_id
    # Turning the k lowest-scored queries out-of-scope, for k = 0..n.
    caught = np.concatenate([[0], np.cumsum(~inside)]) + np.concatenate(
        [np.cumsum((~inside & (preds == oos_id))[::-1])[::-1], [0]])
    kept = np.concatenate([np.cumsum((inside & (preds == labels))[::-1])[::-1], [0]])
    # A threshold cannot split queries of equal score.
    splits = np.concatenate([[True], score[1:] != score[:-1], [True]])
    ok = splits & (caught / (~inside).sum() >= recall)
    return float(kept[ok].max() / inside.sum()) if ok.any() else float("nan")


def main() -> None:
    params = load_params(paths.PARAMS)
    ds, names = load_prepared(paths.PREPARED)
    task = get_task(params.task)
    oos_id = names.index(params.data.oos_label)
    labels = {split: np.asarray(ds[split]["label"]) for split in SPLITS}
    folders = dict(workspace_models()[0])
    members = [f"ensemble seed {seed}" for seed in params.soft_targets.ensemble_seeds]
    folders.update({name: paths.trained(ensemble.member_role(seed))
                    for name, seed in zip(members, params.soft_targets.ensemble_seeds)})
    logits = {}
    for name, folder in folders.items():
        served = inference.pytorch(load_classifier(folder, task), load_saved_processor(folder),
                                   task, params.data.max_length)
        logits[name] = {split: inference.logits(served, task, ds[split][task.column],
                                                params.evaluate.batch_size, desc=name)
                        for split in SPLITS}
    if members:
        logits["the teachers' mean"] = {
            split: np.mean([logits[n][split] for n in ["teacher", *members]], axis=0)
            for split in SPLITS}
    print("| model | score | validation acc | test acc | in-scope acc | oos recall "
          f"| bound: in-scope acc at oos recall ≥ {RECALL} |")
    print("|---|---|---|---|---|---|---|")
    for name, z in logits.items():
        if name in members:
            continue
        preds = {split: z[split].argmax(-1) for split in SPLITS}
        for title, score in SCORES.items():
            s = {split: score(z[split]) for split in SPLITS}
            # Logits and energies can be negative: "no threshold" must lie below every score.
            threshold = oos.best_threshold(labels["validation"], s["validation"],
                                           preds["validation"], oos_id, none=-np.inf)
            out = {split: np.where(s[split] < threshold, oos_id, preds[split])
                   for split in SPLITS}
            y, p = labels["test"], out["test"]
            inside = y != oos_id
            print(f"| {name} | {title} | {(out['validation'] == labels['validation']).mean():.4f} "
                  f"| {(p == y).mean():.4f} | {(p[inside] == y[inside]).mean():.4f} "
                  f"| {(p[~inside] == oos_id).mean():.3f} "
                  f"| {best_in_scope(y, s['test'], preds['test'], oos_id, RECALL):.4f} |")


if __name__ == "__main__":
    main()
