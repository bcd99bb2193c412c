"""Stage evaluate: test-set quality, speed and size of teacher, baseline and student."""

import csv

import numpy as np

from pipeline import paths
from pipeline.config import load_params
from pipeline.data import load_prepared
from pipeline.errors import stage_main
from pipeline.evaluation import evaluate_models, per_class_f1
from pipeline.outputs import atomic_dir, write_json
from pipeline.tracking import log_metrics, stage_run

import mlflow


def _write_csv(path, rows: list[dict]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


@stage_main
def main() -> None:
    params = load_params(paths.PARAMS)
    ds, names = load_prepared(paths.PREPARED)
    test = ds["test"]
    folders = {role: paths.trained(role) for role in paths.ROLES}
    with stage_run("evaluate", params):
        metrics, preds = evaluate_models(folders, test, names, params)
        labels = np.asarray(test["label"])
        with atomic_dir(paths.PLOTS) as plots:
            for role in ("teacher", "student"):
                _write_csv(plots / f"confusion_{role}.csv", [
                    {"actual": names[a], "predicted": names[p]}
                    for a, p in zip(labels, preds[role], strict=True)
                ])
            _write_csv(plots / "per_class_f1.csv", per_class_f1(labels, preds, names))
        write_json(paths.METRICS, metrics)
        log_metrics(metrics)
        mlflow.log_artifact(str(paths.METRICS))
        mlflow.log_artifacts(str(paths.PLOTS), "plots")


if __name__ == "__main__":
    main()
