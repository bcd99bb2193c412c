"""Training in several processes through torchrun: params, the launch check, rank 0 alone writing
and tracking, the global batch in reports and checkpoint fingerprints; a 2-process `dvc repro`
and two nodes rendezvousing on localhost, on the CPU (gloo)."""

import csv
import json
import os
import socket
import subprocess
from pathlib import Path

import mlflow
import pytest
import yaml
from datasets import Dataset
from safetensors import safe_open

from conftest import ROOT, run_checked, scratch_project, tiny_bert
from pipeline import checkpoints, distributed, tracking
from pipeline.config import parse_params
from pipeline.errors import UserError

RAW = yaml.safe_load((ROOT / "params.yaml").read_text())
PARAMS = parse_params(RAW)


def test_an_impossible_process_count_is_one_line_naming_the_key():
    raw = {**RAW, "distributed": {"nproc_per_node": 0, "nnodes": 1}}
    with pytest.raises(UserError) as error:
        parse_params(raw)
    assert "'distributed.nproc_per_node' = 0" in str(error.value) and "\n" not in str(error.value)


def test_a_launch_unlike_the_params_stops_with_the_command_to_use(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(UserError, match="torchrun --nnodes 1 --nproc-per-node 1"):
        distributed.check_launch(PARAMS.distributed)
    monkeypatch.delenv("WORLD_SIZE")
    distributed.check_launch(PARAMS.distributed)  # plain `python -m`: one process, as asked


def test_other_ranks_neither_track_nor_log(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("RANK", "1")
    with tracking.stage_run("teacher", PARAMS) as run, \
            tracking.training_callbacks(tmp_path / "live") as callbacks:
        tracking.log_metrics({"validation": {"accuracy": 1.0}})
        assert run is None and callbacks == [] and mlflow.active_run() is None
    assert list(tmp_path.iterdir()) == []


def test_the_fingerprint_holds_the_global_batch():
    model = tiny_bert(layers=1)
    split = Dataset.from_dict({"input_ids": [[1, 2]], "label": [0]})
    one, two = (checkpoints.fingerprint("baseline", PARAMS, batch, model, split) for batch in (32, 64))
    assert one != two
    # How the global batch is split over machines is not part of it.
    other = PARAMS.model_copy(update={"distributed": PARAMS.distributed.model_copy(
        update={"nproc_per_node": 2})})
    assert checkpoints.fingerprint("baseline", other, 32, model, split) == one


def test_only_rank_0_clears_stale_checkpoints(tmp_path):
    folder = tmp_path / "baseline"
    (folder / "checkpoint-3").mkdir(parents=True)
    (folder / checkpoints.STAMP).write_text("other")
    assert checkpoints.find(folder, "this") is None and (folder / "checkpoint-3").is_dir()
    assert checkpoints.latest(folder, "this") is None and not (folder / "checkpoint-3").exists()
    assert (folder / checkpoints.STAMP).read_text() == "this"


# gloo processes on the CPU on any machine: a 1-GPU machine would refuse 2 processes.
CPU = {"CUDA_VISIBLE_DEVICES": ""}
INTENTS = {"balance": ["whats my balance", "money in checking", "savings balance please"],
           "transfer": ["send 20 dollars to sam", "move money to savings", "wire cash to mom"],
           "oos": ["tell me a joke", "who won the match", "capital of peru"]}


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A tiny project whose baseline trains in 2 processes of 4 rows each (global batch 8)."""
    repo = tmp_path_factory.mktemp("ddp")
    folder = repo / "data" / "tiny"
    folder.mkdir(parents=True)
    for split, n in (("train", 8), ("validation", 3), ("test", 3)):
        with (folder / f"{split}.csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["text", "label"])
            writer.writerows([f"{q[i % 3]} ({split} {i})", label]
                             for label, q in INTENTS.items() for i in range(n))
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"].update(source="data/tiny", watch="data/tiny")
    params["teacher"]["config_overrides"] = {"num_hidden_layers": 2, "hidden_size": 32,
                                             "num_attention_heads": 2, "intermediate_size": 64}
    params["student"]["train"].update(epochs=2, batch_size=4, learning_rate=1e-3)
    params["student"].update(layers=[1], freeze_word_embeddings=True)
    params["distributed"].update(nproc_per_node=2, nnodes=1)
    scratch_project(repo, params)
    run_checked(["dvc", "repro", "baseline"], repo, CPU)
    return repo


def report(repo: Path) -> dict:
    return json.loads((repo / "reports/baseline.json").read_text())


def test_two_processes_train_and_rank_0_alone_writes_and_tracks(repo):
    assert report(repo)["batch"] == {"per_device": 4, "processes": 2, "global": 8}
    assert (repo / "models/trained/baseline/model.safetensors").is_file()
    assert not (repo / "models/checkpoints/baseline").exists()
    # One DVCLive series of 2 epochs (header + 2 rows), not one per process.
    tsv = repo / "reports/live/baseline/plots/metrics/eval/accuracy.tsv"
    assert len(tsv.read_text().strip().splitlines()) == 3
    client = mlflow.MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(RAW["tracking"]["experiment"])
    stages = [r.data.tags["stage"] for r in client.search_runs([experiment.experiment_id])]
    assert sorted(stages) == ["baseline", "pipeline"]


def test_distillation_with_a_learned_projection_in_two_processes(repo):
    """hidden_mse trains a projection outside the model's forward; the validation objective
    is summed over both processes' rows."""
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["teacher"]["train"].update(epochs=1, batch_size=4)
    params["features"]["loss"] = "hidden_mse"
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run_checked(["dvc", "repro", "distill"], repo, CPU)
    student = json.loads((repo / "reports/student.json").read_text())
    assert student["batch"]["processes"] == 2 and student["validation"]["distillation_loss"] > 0
    with safe_open(repo / "models/trained/student/model.safetensors", "pt") as weights:
        assert not [key for key in weights.keys() if "projection" in key]  # training-only


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_nodes_on_localhost_train_as_one_job(repo):
    """Node 0 runs `dvc repro`, node 1 the stage's command; torchrun takes the c10d rendezvous
    from its PET_* environment variables, as under Slurm or Kubernetes (README)."""
    one_node = report(repo)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["distributed"].update(nproc_per_node=1, nnodes=2)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, **CPU, "PET_RDZV_BACKEND": "c10d", "PET_RDZV_ID": "test",
           "PET_RDZV_ENDPOINT": f"127.0.0.1:{free_port()}"}
    worker = subprocess.Popen(
        ["torchrun", "--nnodes", "2", "--nproc-per-node", "1", "-m", "stages.baseline"],
        cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        run_checked(["dvc", "repro", "baseline"], repo, env)
        out, _ = worker.communicate(timeout=300)
    finally:
        worker.kill()
    assert worker.returncode == 0, out[-4000:]
    two_nodes = report(repo)
    assert two_nodes["batch"] == {"per_device": 4, "processes": 2, "global": 8}
    # The same global batch over the same ranks: the same training.
    assert two_nodes["validation"] == pytest.approx(one_node["validation"], abs=1e-5)
