"""pipeline.tracking against a real MLflow sqlite store: the experiment, run names, nesting under
one parent per pipeline run, the data as input, relative artifacts, killed runs."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
import yaml
from datasets import Dataset, DatasetDict

from conftest import ROOT
from pipeline import prepared, tracking
from pipeline.config import parse_params

PARAMS = parse_params(yaml.safe_load((ROOT / "params.yaml").read_text()))


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project folder with prepared data and its own MLflow database, as the working dir."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    for name in ("DVC_EXP_NAME", "DVC_EXP_BASELINE_REV", "DVC_STAGE"):
        monkeypatch.delenv(name, raising=False)
    prepared.save_prepared(
        DatasetDict({split: Dataset.from_dict({"text": ["a", "b"], "label": [0, 1]})
                     for split in ("train", "validation", "test")}), ["no", "yes"], "data/prepared")
    return tmp_path


def client() -> mlflow.MlflowClient:
    return mlflow.MlflowClient(os.environ["MLFLOW_TRACKING_URI"])


def runs() -> list:
    c = client()
    experiment = c.get_experiment_by_name(PARAMS.tracking.experiment)
    return c.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])


def test_experiment_is_model_training_with_artifacts_relative_to_the_project(project):
    with tracking.stage_run("evaluate", PARAMS):
        Path("report.json").write_text("{}")
        tracking.log_artifact(Path("report.json"))
    experiment = client().get_experiment_by_name(PARAMS.tracking.experiment)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert experiment.artifact_location == f"mlruns/{experiment.experiment_id}"
    [run] = runs()
    assert run.info.artifact_uri == f"mlruns/{experiment.experiment_id}/{run.info.run_id}/artifacts"
    assert (project / run.info.artifact_uri / "report.json").is_file()


def test_a_queued_experiment_logs_artifacts_into_the_project(project, monkeypatch):
    copy = project / ".dvc/tmp/exps/tmpabc"
    copy.mkdir(parents=True)
    (copy / "plots").mkdir()
    (copy / "plots/a.png").write_bytes(b"png")
    with tracking.stage_run("evaluate", PARAMS) as run:
        monkeypatch.chdir(copy)
        tracking.log_artifact(Path("plots"), "plots")
    assert (project / run.info.artifact_uri / "plots/a.png").is_file()


def test_runs_are_named_by_stage_and_experiment_with_the_data_as_input(project, monkeypatch):
    monkeypatch.setenv("DVC_EXP_NAME", "tangy-dace")
    with tracking.stage_run("distill", PARAMS):
        pass
    [run] = runs()
    assert run.info.run_name == "distill · tangy-dace"
    tags = run.data.tags
    assert tags["stage"] == "distill" and tags["dvc_experiment"] == "tangy-dace"
    assert tags["host"] and int(tags["pid"]) == os.getpid()
    assert run.data.params["pipeline.alpha"] == str(PARAMS.alpha)
    inputs = {d.dataset.name: d for d in run.inputs.dataset_inputs}
    assert set(inputs) == {"prepared/train", "prepared/validation", "prepared/test"}
    digest = prepared.digest(*prepared.load_prepared("data/prepared"))
    assert {d.dataset.digest for d in inputs.values()} == {digest}
    for split, entry in inputs.items():
        context = {t.key: t.value for t in entry.tags}
        assert context["mlflow.data.context"] == split.rpartition("/")[2]
        source = json.loads(entry.dataset.source)
        assert source["split"] == split.rpartition("/")[2]
        assert source["path"] == "data/prepared"


def test_the_stages_of_one_dvc_run_nest_under_one_parent(project, monkeypatch):
    invocation = {"key": "host:100:1"}
    monkeypatch.setattr(tracking, "dvc_invocation", lambda: invocation["key"])
    monkeypatch.setenv("DVC_EXP_NAME", "first-exp")
    for stage in ("distill", "evaluate"):
        with tracking.stage_run(stage, PARAMS):
            if stage == "evaluate":
                tracking.log_summary({"student": {"accuracy": 0.75}})
    invocation["key"] = "host:200:2"
    monkeypatch.setenv("DVC_EXP_NAME", "second-exp")
    with tracking.stage_run("distill", PARAMS):
        pass
    every = runs()
    parents = [r for r in every if r.data.tags["stage"] == "pipeline"]
    assert [p.info.run_name for p in parents] == ["first-exp", "second-exp"]
    assert all(p.info.status == "FINISHED" for p in parents)
    assert parents[0].data.params["pipeline.alpha"] == str(PARAMS.alpha)
    assert parents[0].data.metrics == {"student.accuracy": 0.75}
    assert parents[1].data.metrics == {}
    children = {r.info.run_name: r.data.tags["mlflow.parentRunId"] for r in every
                if r.data.tags["stage"] != "pipeline"}
    assert children == {"distill · first-exp": parents[0].info.run_id,
                        "evaluate · first-exp": parents[0].info.run_id,
                        "distill · second-exp": parents[1].info.run_id}


def test_outside_dvc_a_stage_run_has_no_parent(project):
    assert tracking.dvc_invocation() is None
    with tracking.stage_run("evaluate", PARAMS):
        pass
    [run] = runs()
    assert "mlflow.parentRunId" not in run.data.tags


def test_a_failed_stage_fails_its_run_and_its_parent(project, monkeypatch):
    monkeypatch.setattr(tracking, "dvc_invocation", lambda: "host:300:3")
    with pytest.raises(RuntimeError), tracking.stage_run("distill", PARAMS):
        raise RuntimeError("boom")
    assert {r.data.tags["stage"]: r.info.status for r in runs()} == {
        "pipeline": "FAILED", "distill": "FAILED"}


KILLED_STAGE = """
import os, signal, yaml
from pathlib import Path
from pipeline import prepared, tracking
from pipeline.config import parse_params

tracking.dvc_invocation = lambda: "host:400:4"
params = parse_params(yaml.safe_load(Path({params!r}).read_text()))
with tracking.stage_run("evaluate", params):
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_killed_stage_run_is_marked_killed_by_the_next_stage(project, monkeypatch):
    stage = subprocess.run(
        [sys.executable, "-c", KILLED_STAGE.format(params=str(ROOT / "params.yaml"))],
        env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True)
    assert stage.returncode == -9, stage.stderr.decode()[-2000:]
    assert {r.data.tags["stage"]: r.info.status for r in runs()} == {
        "pipeline": "RUNNING", "evaluate": "RUNNING"}
    with tracking.stage_run("card", PARAMS):
        # This stage's own run is alive: never marked.
        assert tracking.mark_killed_runs(client(), runs()[0].info.experiment_id) == []
    status = {r.data.tags["stage"]: r.info.status for r in runs()}
    assert status == {"pipeline": "KILLED", "evaluate": "KILLED", "card": "FINISHED"}


def test_the_published_folder_is_a_registered_version_from_a_queued_experiment(project, monkeypatch):
    monkeypatch.setenv("DVC_EXP_NAME", "tangy-dace")
    copy = project / ".dvc/tmp/exps/tmpabc"
    (copy / "models/student/onnx").mkdir(parents=True)
    (copy / "models/student/config.json").write_text("{}")
    (copy / "models/student/onnx/model.onnx").write_bytes(b"onnx")
    monkeypatch.chdir(copy)
    with tracking.stage_run("card", PARAMS) as run:
        version = tracking.register_model(Path("models/student"), "demo-student")
    monkeypatch.chdir(project)
    shutil.rmtree(copy)  # DVC removes a queued experiment's copy when it ends
    [registered] = client().search_model_versions("name = 'demo-student'")
    assert str(registered.version) == str(version.version) == "1"
    assert registered.run_id == run.info.run_id
    # The lineage the run has (a git commit too, in a git repository; this folder is none).
    assert registered.tags == {"dvc_experiment": "tangy-dace"}
    assert client().get_run(run.info.run_id).data.tags["registered_model"] == "models:/demo-student/1"
    pulled = Path(mlflow.artifacts.download_artifacts("models:/demo-student/1", dst_path="pulled"))
    assert (pulled / "onnx/model.onnx").read_bytes() == b"onnx" and (pulled / "config.json").is_file()


TWO_AT_ONCE = """
import sys, time
from pathlib import Path
import yaml
from pipeline import tracking
from pipeline.config import parse_params

params = parse_params(yaml.safe_load(Path({params!r}).read_text()))
Path(sys.argv[1] + ".ready").touch()
while not Path("go").exists():
    time.sleep(0.01)
with tracking.stage_run(sys.argv[1], params):
    pass
"""


def test_two_queued_experiments_can_open_a_new_database_at_once(project):
    # `dvc queue start -j 2` in a fresh clone: both first stages create the sqlite tables.
    script = TWO_AT_ONCE.format(params=str(ROOT / "params.yaml"))
    stages = [subprocess.Popen([sys.executable, "-c", script, stage],
                               env={**os.environ, "PYTHONPATH": str(ROOT)},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
              for stage in ("distill", "baseline")]
    while not all(Path(f"{stage}.ready").exists() for stage in ("distill", "baseline")):
        assert all(s.poll() is None for s in stages), stages[0].communicate()[0][-2000:]
        time.sleep(0.05)
    Path("go").touch()
    for stage in stages:
        out = stage.communicate()[0].decode()
        assert stage.returncode == 0, out[-3000:]
    assert sorted(r.data.tags["stage"] for r in runs()) == ["baseline", "distill"]
