"""MLflow + DVCLive wiring: one MLflow run per stage, nested under one parent run per
`dvc repro` / `dvc exp run`, and per-epoch DVC plots through DVCLive."""

from __future__ import annotations

import copy
import logging
import os
import socket
import sqlite3
import subprocess
import time
import warnings
from collections.abc import Iterator
from contextlib import AbstractContextManager, closing, contextmanager, nullcontext
from pathlib import Path

import mlflow
import psutil
from dvclive import Live
from filelock import FileLock
from mlflow import MlflowClient
from mlflow.data.dataset import Dataset
from mlflow.data.huggingface_dataset_source import HuggingFaceDatasetSource
from mlflow.entities import Metric, Param
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
from transformers import TrainerCallback
from transformers.integrations import DVCLiveCallback, MLflowCallback

from pipeline import distributed, paths, prepared
from pipeline.config import Params

log = logging.getLogger(__name__)
# MLflow's schema inference for a dataset input warns, when it is logged, that integer columns
# cannot hold missing values; the prepared labels never miss one.
warnings.filterwarnings("ignore", "Hint: Inferred schema contains integer", UserWarning)

KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = {KIND_TAG: "custom_model_development"}
# A local experiment's artifacts, relative to the project root (MLflow's own default folder).
LOCAL_ARTIFACTS = "mlruns"
# The parent run of one `dvc repro` / `dvc exp run`, and the tag that finds it again.
PIPELINE = "pipeline"
INVOCATION_TAG = "dvc_invocation"


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


def _this_process() -> dict[str, str]:
    """Tags that let a later stage tell whether this run's process is still alive."""
    me = psutil.Process()
    return {"host": socket.gethostname(), "pid": str(me.pid),
            "pid_started": f"{me.create_time():.3f}"}


def run_label() -> str:
    """What tells one pipeline run from another in MLflow's run list: the DVC experiment's
    name under `dvc exp run`, else the workspace at its commit."""
    if name := os.environ.get("DVC_EXP_NAME"):
        return name
    commit = _git_commit()
    return f"workspace@{commit[:7]}" if commit else "workspace"


def run_tags(stage: str) -> dict[str, str]:
    """Tags that lead from an MLflow run back to its code and DVC experiment, and to the
    process that runs it."""
    tags = {"stage": stage, **_this_process()}
    if commit := _git_commit():
        tags["git_commit"] = commit
    # Set by `dvc exp run`; absent under plain `dvc repro`.
    for env, tag in (("DVC_EXP_NAME", "dvc_experiment"), ("DVC_EXP_BASELINE_REV", "dvc_baseline_rev")):
        if value := os.environ.get(env):
            tags[tag] = value
    return tags


def _project_root(cwd: Path | None = None) -> Path:
    """The project's folder, also from inside a queued DVC experiment's copy of it."""
    here = str((cwd or Path.cwd()).resolve())
    return Path(here.split(f"{os.sep}.dvc{os.sep}tmp{os.sep}exps{os.sep}")[0])


def anchored_uri(uri: str, cwd: Path | None = None) -> str:
    """A relative sqlite URI made absolute at the project root.

    Queued DVC experiments run in a copy of the project under .dvc/tmp/exps/; anchored at the
    project root, their runs land in the project's own database, beside every other run.
    """
    prefix = "sqlite:///"
    if not uri.startswith(prefix) or uri.startswith(prefix + "/"):
        return uri
    return prefix + str(_project_root(cwd) / uri.removeprefix(prefix))


def _keep_artifacts_relative(uri: str, experiment_id: str) -> None:
    """Store a new experiment's artifact location relative to the project (`mlruns/<id>`).

    MLflow makes a local artifact location absolute when it creates the experiment, so a moved
    or cloned project would still point at the old machine's folder; it has no API to change
    the location afterwards, hence the one UPDATE on its sqlite database. A tracking server
    keeps artifacts in its own store (`mlflow-artifacts:/...`), which needs nothing.
    """
    if not uri.startswith("sqlite:///"):
        return
    with closing(sqlite3.connect(uri.removeprefix("sqlite:///"))) as db, db:
        db.execute("UPDATE experiments SET artifact_location = ? WHERE experiment_id = ?",
                    (f"{LOCAL_ARTIFACTS}/{experiment_id}", int(experiment_id)))


def _experiment(client: MlflowClient, name: str, uri: str) -> str:
    """The experiment's id, created on first use: a model-training experiment (MLflow's UI then
    opens on runs, params and metric charts, not on GenAI traces)."""
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            experiment_id = client.create_experiment(name, tags=EXPERIMENT_KIND)
        except MlflowException:  # another stage created it first
            return client.get_experiment_by_name(name).experiment_id
        _keep_artifacts_relative(uri, experiment_id)
        return experiment_id
    if experiment.tags.get(KIND_TAG) != EXPERIMENT_KIND[KIND_TAG]:
        client.set_experiment_tag(experiment.experiment_id, KIND_TAG, EXPERIMENT_KIND[KIND_TAG])
    return experiment.experiment_id


def _first_use(uri: str) -> AbstractContextManager:
    """Held while a stage opens a sqlite store, which creates its tables the first time.

    Two processes that open a new database at once (`dvc queue start -j 2` in a fresh clone)
    both run MLflow's schema migrations, and one fails; the lock makes the second wait and find
    the tables made. A tracking server needs none.
    """
    if not uri.startswith("sqlite:///"):
        return nullcontext()
    return FileLock(uri.removeprefix("sqlite:///") + ".lock")


def _configure(params: Params) -> tuple[MlflowClient, str]:
    # The Trainer's MLflowCallback reads the environment, so the URI goes there too.
    uri = os.environ.setdefault(
        "MLFLOW_TRACKING_URI", anchored_uri(params.tracking.mlflow_uri)
    )
    os.environ.setdefault("MLFLOW_EXPERIMENT_NAME", params.tracking.experiment)
    mlflow.set_tracking_uri(uri)
    with _first_use(uri):
        client = MlflowClient(uri)
        experiment_id = _experiment(client, os.environ["MLFLOW_EXPERIMENT_NAME"], uri)
    mlflow.set_experiment(experiment_id=experiment_id)
    return client, experiment_id


def _alive(tags: dict[str, str]) -> bool:
    try:
        started = psutil.Process(int(tags["pid"])).create_time()
    except (KeyError, ValueError, psutil.Error):
        return False
    # A pid the system has given to a newer process is not the run's.
    return abs(started - float(tags.get("pid_started", started))) < 1


def mark_killed_runs(client: MlflowClient, experiment_id: str) -> list[str]:
    """Mark KILLED the experiment's runs still RUNNING whose process, on this host, is gone
    (a stage killed mid-run cannot end its own run). Returns their ids."""
    host = socket.gethostname().replace("'", "")
    running = client.search_runs(
        [experiment_id], f"attributes.status = 'RUNNING' and tags.host = '{host}'")
    killed = [run.info.run_id for run in running if not _alive(run.data.tags)]
    for run_id in killed:
        client.set_terminated(run_id, "KILLED")
    return killed


def dvc_invocation() -> str | None:
    """Which `dvc repro` / `dvc exp run` runs this stage: `host:pid:start time` of the DVC
    process above it, or None outside DVC.

    DVC runs each stage as its own process and gives it no run id, but one invocation is one
    DVC process (a queued experiment: its own `dvc exp exec-run`), so the stages of one run,
    and only they, share it.
    """
    if "DVC_STAGE" not in os.environ:
        return None
    process = psutil.Process().parent()
    while process is not None:
        try:
            argv = process.cmdline()
            if any(Path(arg).name == "dvc" for arg in argv[:2]) or argv[1:3] == ["-m", "dvc"]:
                return f"{socket.gethostname()}:{process.pid}:{process.create_time():.0f}"
            process = process.parent()
        except psutil.Error:
            return None
    return None


def _parent_run(client: MlflowClient, experiment_id: str, invocation: str,
                params: dict[str, object]) -> str:
    """The run that holds one pipeline run's stages, found by its invocation tag or created."""
    found = client.search_runs(
        [experiment_id], f"tags.{INVOCATION_TAG} = '{invocation}' and tags.stage = '{PIPELINE}'")
    if found:
        return found[0].info.run_id
    run = client.create_run(experiment_id, run_name=run_label(),
                            tags={**run_tags(PIPELINE), INVOCATION_TAG: invocation})
    client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in params.items()])
    return run.info.run_id


def prepared_datasets(folder: Path = paths.PREPARED) -> list[Dataset]:
    """The prepared splits as MLflow datasets (schema, row count, the data's digest): what
    every stage of the pipeline was trained or evaluated on. Empty when there is no such
    folder."""
    if not folder.is_dir():
        return []
    splits, names = prepared.load_prepared(folder)
    digest = prepared.digest(splits, names)
    # The source names the split: from_huggingface would take it from the Dataset object,
    # which calls every split loaded from disk "train".
    return [mlflow.data.from_huggingface(
                splits[split], name=f"{folder.name}/{split}", digest=digest,
                source=HuggingFaceDatasetSource(folder.as_posix(), split=split))
            for split in splits]


@contextmanager
def stage_run(stage: str, params: Params) -> Iterator[mlflow.ActiveRun]:
    """An MLflow run for one stage, with the pipeline's params (flattened), lineage tags and
    the prepared data as its input, nested under its pipeline run's parent when DVC runs it.

    Runs of this host whose process died (a killed stage) are marked KILLED first. Under
    torchrun only rank 0 has a run (the others yield None): one run per stage.
    """
    if not distributed.is_main():
        yield None
        return
    client, experiment_id = _configure(params)
    mark_killed_runs(client, experiment_id)
    flat = {f"pipeline.{k}": v for k, v in flatten(params.model_dump()).items()}
    data = prepared_datasets()
    parent = None
    if invocation := dvc_invocation():
        parent = _parent_run(client, experiment_id, invocation, flat)
        client.update_run(parent, status="RUNNING")
        for key, value in _this_process().items():
            client.set_tag(parent, key, value)
    status = "FAILED"
    try:
        with mlflow.start_run(run_name=f"{stage} · {run_label()}", parent_run_id=parent,
                              tags=run_tags(stage)) as run:
            mlflow.log_params(flat)
            for dataset in data:
                mlflow.log_input(dataset, context=dataset.name.rpartition("/")[2])
            yield run
        status = "FINISHED"
    finally:
        if parent:
            client.set_terminated(parent, status)


def _artifact_store(uri: str):
    """The store behind an artifact URI, under the project's artifact folder when the
    experiment's location is relative (also from a queued experiment's copy of the project)."""
    if uri.startswith(LOCAL_ARTIFACTS + "/"):
        return LocalArtifactRepository(str(_project_root() / uri))
    return get_artifact_repository(uri)


def log_artifact(path: Path, artifact_path: str | None = None) -> None:
    """Log a file or folder to the active run."""
    store = _artifact_store(mlflow.active_run().info.artifact_uri)
    if path.is_dir():
        store.log_artifacts(str(path), artifact_path)
    else:
        store.log_artifact(str(path), artifact_path)


# The run tags a registered model version carries: where its code and DVC experiment are.
LINEAGE = ("git_commit", "dvc_experiment", "dvc_baseline_rev")
# The card run's tag that leads from the run to the version it registered.
REGISTERED_TAG = "registered_model"


def register_model(folder: Path, name: str) -> ModelVersion:
    """Log `folder` as a model of the active run (MLflow 3's logged model, files as they are)
    and register it as a new version of `name` in the Model Registry, tagged with the run's
    git commit and DVC experiment.

    The folder goes up unchanged (weights, card, ONNX files): `mlflow.transformers.log_model`
    would reload the model and may look its card up on the Hub.
    """
    run = mlflow.active_run()
    tags = mlflow.get_run(run.info.run_id).data.tags
    lineage = {key: tags[key] for key in LINEAGE if key in tags}
    model = mlflow.initialize_logged_model(name=folder.name, source_run_id=run.info.run_id,
                                           tags=lineage, model_type="transformers")
    try:
        _artifact_store(model.artifact_location).log_artifacts(str(folder))
    except BaseException:
        mlflow.finalize_logged_model(model.model_id, "FAILED")
        raise
    mlflow.finalize_logged_model(model.model_id, "READY")
    version = mlflow.register_model(f"models:/{model.model_id}", name, tags=lineage)
    mlflow.set_tag(REGISTERED_TAG, f"models:/{name}/{version.version}")
    return version


# The Trainer's log keys that become DVC plots: the curves a user reads. The rest (runtime,
# samples per second, learning rate, gradient norm, the end-of-training summary and its
# single-point total_flos) stays in the MLflow run.
PLOTTED = ("loss", "eval_loss", "eval_accuracy", "eval_macro_f1", "eval_distillation_loss")


class EpochDVCLiveCallback(DVCLiveCallback):
    """DVCLiveCallback with one DVCLive step per epoch, for the PLOTTED series only.

    The stock callback advances the step on every Trainer log call, and the Trainer logs train
    and eval metrics separately each epoch, so its step counts log calls, not epochs.
    """

    def on_log(self, args, state, control, model=None, logs=None, **kwargs):
        plotted = {k: v for k, v in (logs or {}).items() if k in PLOTTED}
        if not plotted:
            return
        if self.live is not None and state.epoch is not None:
            self.live.step = round(state.epoch)
        super().on_log(args, state, control, model=model, logs=plotted, **kwargs)


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
    `dvc exp run` records the experiment itself (save_dvc_exp=False). Processes other than
    rank 0 get none: Live has no rank logic of its own.
    """
    if not distributed.is_main():
        yield []
        return
    live = Live(dir=str(live_dir), dvcyaml=False, save_dvc_exp=False)
    try:
        loggers = [MLflowCallback(), EpochDVCLiveCallback(live=live)]
        yield [*loggers, ReplayOnResume(loggers)]
    finally:
        live.end()


def _numbers(metrics: dict) -> dict[str, float]:
    return {k: float(v) for k, v in flatten(metrics).items() if isinstance(v, (int, float))}


def log_metrics(metrics: dict) -> None:
    # Other ranks have no active run; MLflow would start a stray one.
    if not distributed.is_main():
        return
    mlflow.log_metrics(_numbers(metrics))


def log_params(params: dict) -> None:
    """Settings a stage found out as it ran (flattened), beside the pipeline's params."""
    if not distributed.is_main():
        return
    mlflow.log_params(flatten(params))


def log_summary(summary: dict) -> None:
    """The headline figures (already among the active run's metrics) on its pipeline run too,
    so that the runs list, one row per `dvc repro`, shows them with its stages folded."""
    if not distributed.is_main():
        return
    client = MlflowClient()
    parent = client.get_run(mlflow.active_run().info.run_id).data.tags.get(MLFLOW_PARENT_RUN_ID)
    if parent:
        now = int(time.time() * 1000)
        client.log_batch(parent, metrics=[Metric(key, value, now, 0)
                                          for key, value in _numbers(summary).items()])
