"""MLflow + DVCLive wiring: one MLflow run per stage, per-epoch DVC plots through DVCLive."""

from __future__ import annotations

import copy
import logging
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mlflow
from dvclive import Live
from transformers import TrainerCallback
from transformers.integrations import DVCLiveCallback, MLflowCallback

from pipeline.config import Params

log = logging.getLogger(__name__)


def flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    """{'a': {'b': 1}} -> {'a.b': 1}; MLflow params and metrics are flat."""
    flat: dict[str, object] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def run_tags(stage: str) -> dict[str, str]:
    """Tags that lead from an MLflow run back to its code and DVC experiment."""
    tags = {"stage": stage}
    if commit := _git_commit():
        tags["git_commit"] = commit
    # Set by `dvc exp run`; absent under plain `dvc repro`.
    for env, tag in (("DVC_EXP_NAME", "dvc_experiment"), ("DVC_EXP_BASELINE_REV", "dvc_baseline_rev")):
        if value := os.environ.get(env):
            tags[tag] = value
    return tags


def anchored_uri(uri: str, cwd: Path | None = None) -> str:
    """A relative sqlite URI made absolute at the project root.

    Queued DVC experiments run in a copy of the project under .dvc/tmp/exps/; anchored at the
    project root, their runs land in the project's own database, beside every other run.
    """
    prefix = "sqlite:///"
    if not uri.startswith(prefix) or uri.startswith(prefix + "/"):
        return uri
    here = str((cwd or Path.cwd()).resolve())
    root = Path(here.split(f"{os.sep}.dvc{os.sep}tmp{os.sep}exps{os.sep}")[0])
    return prefix + str(root / uri.removeprefix(prefix))


def _configure(params: Params) -> None:
    # The Trainer's MLflowCallback reads the environment, so the URI goes there too.
    uri = os.environ.setdefault(
        "MLFLOW_TRACKING_URI", anchored_uri(params.tracking.mlflow_uri)
    )
    os.environ.setdefault("MLFLOW_EXPERIMENT_NAME", params.tracking.experiment)
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(os.environ["MLFLOW_EXPERIMENT_NAME"])


@contextmanager
def stage_run(stage: str, params: Params) -> Iterator[mlflow.ActiveRun]:
    """An MLflow run for one stage, with the pipeline's params (flattened) and lineage tags."""
    _configure(params)
    with mlflow.start_run(run_name=stage, tags=run_tags(stage)) as run:
        mlflow.log_params({f"pipeline.{k}": v for k, v in flatten(params.model_dump()).items()})
        yield run


class EpochDVCLiveCallback(DVCLiveCallback):
    """DVCLiveCallback with one DVCLive step per epoch.

    The stock callback advances the step on every Trainer log call, and the Trainer logs train
    and eval metrics separately each epoch, so its step counts log calls, not epochs.
    """

    def on_log(self, args, state, control, model=None, logs=None, **kwargs):
        if self.live is not None and state.epoch is not None:
            self.live.step = round(state.epoch)
        super().on_log(args, state, control, model=model, logs=logs, **kwargs)


class ReplayOnResume(TrainerCallback):
    """On a run resumed from a checkpoint, hand the epochs logged before the interruption to
    `callbacks` again.

    DVC clears a stage's outputs before it reruns the stage and the MLflow run is a new one, so
    without this the plots and the run would start at the resumed epoch. Goes last in the
    Trainer's callbacks, so the others are set up when it replays.
    """

    def __init__(self, callbacks: list[TrainerCallback]):
        self.callbacks = callbacks

    def on_train_begin(self, args, state, control, **kwargs):
        for entry in state.log_history:
            then = copy.copy(state)
            then.epoch, then.global_step = entry["epoch"], entry["step"]
            logs = {k: v for k, v in entry.items() if k != "step"}
            for callback in self.callbacks:
                callback.on_log(args, then, control, logs=logs)


@contextmanager
def training_callbacks(live_dir: str | Path) -> Iterator[list[TrainerCallback]]:
    """Trainer callbacks that log every epoch to the active MLflow run and to DVCLive.

    DVCLive writes its plots under `live_dir` only: dvc.yaml declares them (dvcyaml=False), and
    `dvc exp run` records the experiment itself (save_dvc_exp=False).
    """
    live = Live(dir=str(live_dir), dvcyaml=False, save_dvc_exp=False)
    try:
        loggers = [MLflowCallback(), EpochDVCLiveCallback(live=live)]
        yield [*loggers, ReplayOnResume(loggers)]
    finally:
        live.end()


def log_metrics(metrics: dict) -> None:
    mlflow.log_metrics(
        {k: float(v) for k, v in flatten(metrics).items() if isinstance(v, (int, float))}
    )
