"""Stage evaluate: test-set quality, speed and size of teacher, baseline and student, and of the
teacher's and student's ONNX exports."""

import numpy as np

from pipeline import ensemble, paths
from pipeline.config import load_params
from pipeline.errors import stage_main
from pipeline.evaluation import evaluate_models, summary, workspace_models, write_figures
from pipeline.outputs import atomic_dir, write_json
from pipeline.prepared import load_prepared
from pipeline.tasks import get_task
from pipeline.tracking import log_artifact, log_metrics, log_summary, stage_run


@stage_main
def main() -> None:
    params = load_params(paths.PARAMS)
    ds, names = load_prepared(paths.PREPARED)
    test = ds["test"]
    folders, exports = workspace_models()
    members = ensemble.load_members(params.soft_targets.ensemble_seeds, get_task(params.task))
    with stage_run("evaluate", params):
        metrics, logits = evaluate_models(folders, ds, names, params, exports, members)
        with atomic_dir(paths.PLOTS) as folder:
            write_figures(folder, np.asarray(test["label"]), logits, names, metrics, params)
        write_json(paths.METRICS, metrics)
        headline = summary(metrics)
        write_json(paths.SUMMARY, headline)
        log_metrics(metrics)
        log_summary(headline)
        log_artifact(paths.METRICS)
        log_artifact(paths.PLOTS, "plots")


if __name__ == "__main__":
    main()
