"""A team's setup, end to end on one tiny `dvc exp run`: the runs on a real `mlflow server`, the
published student in its Model Registry, and the outputs in a DVC remote that a second clone
pulls instead of training."""

import filecmp
import os
import signal
import socket
import subprocess
import time
import urllib.request

import mlflow
import pytest
import yaml

from conftest import run_checked, scratch_project
from test_pipeline_e2e import tiny_params, write_tiny_data

EXPERIMENT = "shared-tiny"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A tracking server as a team runs one: sqlite behind it, artifacts in its own folder."""
    home = tmp_path_factory.mktemp("mlflow-server")
    url = f"http://127.0.0.1:{free_port()}"
    proc = subprocess.Popen(
        ["mlflow", "server", "--backend-store-uri", f"sqlite:///{home / 'mlflow.db'}",
         "--artifacts-destination", str(home / "artifacts"), "--host", "127.0.0.1",
         "--port", url.rpartition(":")[2], "--workers", "1"],
        stdout=(home / "server.log").open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 180
    while True:
        try:
            urllib.request.urlopen(f"{url}/health", timeout=5)
            break
        except OSError:
            assert proc.poll() is None, (home / "server.log").read_text()[-4000:]
            assert time.monotonic() < deadline, "mlflow server did not start"
            time.sleep(1)
    yield url, home / "artifacts"
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=60)


@pytest.fixture(scope="module")
def repo(tmp_path_factory, server):
    """The tiny pipeline, run once with `dvc exp run` against the server, results committed."""
    repo = tmp_path_factory.mktemp("shared")
    write_tiny_data(repo / "data" / "tiny")
    scratch_project(repo, tiny_params(epochs=1))
    run_checked(["dvc", "exp", "run", "--name", EXPERIMENT], repo,
                {"MLFLOW_TRACKING_URI": server[0]})
    run_checked(["git", "add", "-A"], repo)
    run_checked(["git", "commit", "-qm", "tiny run"], repo)
    return repo


def test_every_stage_run_is_on_the_server_with_its_artifacts(server, repo):
    url, artifacts = server
    client = mlflow.MlflowClient(url)
    experiment = client.get_experiment_by_name("distill-pipeline")
    every = client.search_runs([experiment.experiment_id])
    assert sorted(r.data.tags["stage"] for r in every) == [
        "baseline", "card", "distill", "evaluate", "pipeline", "teacher"]
    assert {r.info.status for r in every} == {"FINISHED"}
    assert {r.data.tags.get("dvc_experiment") for r in every} == {EXPERIMENT}
    assert not (repo / "mlflow.db").exists() and not (repo / "mlruns").exists()
    evaluate = next(r for r in every if r.data.tags["stage"] == "evaluate")
    assert evaluate.info.artifact_uri.startswith("mlflow-artifacts:/")
    stored = artifacts / experiment.experiment_id / evaluate.info.run_id / "artifacts"
    assert (stored / "metrics.json").read_bytes() == (repo / "reports/metrics.json").read_bytes()
    assert (stored / "plots/reliability.png").is_file()


def test_the_published_student_is_a_registered_version_of_the_card_run(server, repo, tmp_path):
    client = mlflow.MlflowClient(server[0])
    name = yaml.safe_load((repo / "params.yaml").read_text())["card"]["model_name"]
    [version] = client.search_model_versions(f"name = '{name}'")
    card_run = client.get_run(version.run_id)
    assert card_run.data.tags["stage"] == "card"
    assert card_run.data.tags["registered_model"] == f"models:/{name}/{version.version}"
    commit = run_checked(["git", "rev-parse", "HEAD~1"], repo).strip()  # the commit it ran at
    assert version.tags == {"git_commit": commit, "dvc_experiment": EXPERIMENT,
                            "dvc_baseline_rev": commit}
    # As a teammate fetches it (the README's command).
    pulled = tmp_path / "pulled"
    run_checked(["mlflow", "artifacts", "download", "-u", f"models:/{name}/{version.version}",
                 "-d", str(pulled)], tmp_path, {"MLFLOW_TRACKING_URI": server[0]})
    published = repo / "models/student"
    files = sorted(p.relative_to(published).as_posix() for p in published.rglob("*") if p.is_file())
    assert {"README.md", "model.safetensors", "onnx/model.onnx", "onnx/model_quantized.onnx"} <= set(files)
    assert filecmp.cmpfiles(published, pulled, files, shallow=False)[0] == files


def test_a_second_clone_pulls_the_outputs_from_the_remote_and_trains_nothing(repo, tmp_path):
    run_checked(["dvc", "remote", "add", "-d", "shared", str(tmp_path / "remote")], repo)
    run_checked(["git", "commit", "-qam", "shared DVC remote"], repo)
    run_checked(["dvc", "push"], repo)
    clone = tmp_path / "clone"
    run_checked(["git", "clone", "-q", str(repo), str(clone)], tmp_path)
    run_checked(["dvc", "pull"], clone)
    for path in ("models/trained/student/model.safetensors", "models/student/onnx/model.onnx"):
        assert (clone / path).read_bytes() == (repo / path).read_bytes()
    assert "Data and pipelines are up to date" in run_checked(["dvc", "status"], clone)
    out = run_checked(["dvc", "repro"], clone)
    assert "Data and pipelines are up to date" in out and "Running stage" not in out
