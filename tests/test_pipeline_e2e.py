"""`dvc repro` of the whole pipeline on a tiny params override, in a scratch git + DVC repo."""

import csv
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, run_checked, scratch_project

INTENTS = {
    "balance": ["how much money is in checking", "whats my balance", "balance of savings please"],
    "transfer": ["send 20 dollars to sam", "move money to savings", "transfer cash to my mom"],
    "oos": ["tell me a joke", "who won the match", "what is the capital of peru"],
}
TINY_MODEL = {"num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 2,
              "intermediate_size": 64}


# A Hub token in the environment, as users have one; it must not reach any output.
TOKEN = "hf_e2eSecretTokenThatMustNotLeak"


def run(cmd, cwd):
    return run_checked(cmd, cwd, {"HF_TOKEN": TOKEN})


def write_tiny_data(folder: Path) -> None:
    folder.mkdir(parents=True)
    for split, n in (("train", 8), ("validation", 3), ("test", 4)):
        with (folder / f"{split}.csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["text", "label"])
            for label, queries in INTENTS.items():
                for i in range(n):
                    writer.writerow([f"{queries[i % 3]} ({split} {i})", label])


def tiny_params(epochs: int) -> dict:
    """The shipped params on data/tiny (write_tiny_data) with tiny models and `epochs`."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"].update(source="data/tiny", watch="data/tiny")
    params["teacher"]["config_overrides"] = TINY_MODEL
    tiny_train = {"epochs": epochs, "batch_size": 8, "learning_rate": 1e-3}
    params["teacher"]["train"].update(tiny_train)
    params["student"]["train"].update(tiny_train)
    params["student"].update(layers=[1], freeze_word_embeddings=True)
    params["evaluate"].update(latency_runs=3, latency_warmup=1)
    return params


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("repo")
    write_tiny_data(repo / "data" / "tiny")
    scratch_project(repo, tiny_params(epochs=2), {"HF_TOKEN": TOKEN})
    run(["dvc", "repro"], repo)
    return repo


def test_every_declared_output_exists(repo):
    dvc = yaml.safe_load((repo / "dvc.yaml").read_text())
    for name, stage in dvc["stages"].items():
        for item in stage.get("foreach", [None]):
            for kind in ("outs", "metrics", "plots"):
                for entry in stage.get("do", stage).get(kind, []):
                    path = entry if isinstance(entry, str) else next(iter(entry))
                    path = path.replace("${item}", str(item))
                    assert (repo / path).exists(), f"{name}: {path} missing"
    for role in ("teacher", "baseline", "student"):
        assert (repo / "models/trained" / role / "model.safetensors").exists()


def test_metrics_have_expected_keys_in_range(repo):
    metrics = json.loads((repo / "reports/metrics.json").read_text())
    for role in ("teacher", "baseline", "student"):
        m = metrics[role]
        for key in ("accuracy", "macro_f1", "in_scope_accuracy", "oos_recall", "oos_precision", "ece"):
            assert 0.0 <= m[key] <= 1.0, (role, key, m[key])
        assert m["parameters"] > 0 and m["size_mb"] > 0
        assert metrics["speed"][role]["latency_ms_median"] > 0
    assert 0.0 <= metrics["student_vs_teacher"]["agreement"] <= 1.0
    for role in ("teacher", "baseline", "student"):
        m = metrics[role]
        assert 0.0 <= m["validation_accuracy"] <= 1.0 and 0.0 <= m["oos_threshold"] < 1.0
        assert set(m["thresholded"]) == {"accuracy", "macro_f1", "in_scope_accuracy",
                                         "oos_recall", "oos_precision"}
    paired = metrics["student_vs_baseline"]
    assert 0.0 < paired["mcnemar_p"] <= 1.0 and paired["only_student_right"] >= 0
    published = json.loads((repo / "models/student/config.json").read_text())
    assert published["oos_threshold"] == metrics["student"]["oos_threshold"]
    assert metrics["student"]["parameters"] < metrics["teacher"]["parameters"]
    shown = run(["dvc", "metrics", "show", "--json"], repo)
    assert "student.accuracy" in shown or '"accuracy"' in shown


def test_student_folder_is_a_pipeline_model_with_card(repo):
    from transformers import pipeline

    clf = pipeline("text-classification", model=str(repo / "models/student"))
    assert clf("whats my balance")[0]["label"] in INTENTS
    card = (repo / "models/student/README.md").read_text()
    assert card.startswith("---\n") and "knowledge-distillation" in card
    assert card == (repo / "reports/model_card.md").read_text()


def test_frozen_word_embeddings_stay_as_each_student_started(repo):
    from safetensors.torch import load_file
    from transformers import set_seed

    from pipeline.config import load_params
    from pipeline.models import build_teacher

    key = "bert.embeddings.word_embeddings.weight"
    weights = {role: load_file(repo / "models/trained" / role / "model.safetensors")
               for role in ("teacher", "baseline", "student")}
    # The distilled student starts from the fine-tuned teacher's layers...
    assert weights["student"][key].equal(weights["teacher"][key])
    # ...the baseline from the teacher before fine-tuning, as the teacher stage built it.
    params = load_params(repo / "params.yaml")
    set_seed(params.student.seed)
    names = json.loads((repo / "data/prepared/labels.json").read_text())
    untrained = build_teacher(params.teacher, names).state_dict()
    assert weights["baseline"][key].equal(untrained[key])
    assert not weights["baseline"][key].equal(weights["teacher"][key])
    for role in ("baseline", "student"):
        assert not weights[role]["classifier.weight"].equal(weights["teacher"]["classifier.weight"])
    assert "| word embeddings | frozen (kept as initialised) |" in (
        repo / "models/student/README.md").read_text()


def test_the_onnx_exports_are_checked_measured_and_published(repo):
    import numpy as np
    import onnxruntime as ort
    from transformers import AutoConfig, AutoTokenizer

    metrics = json.loads((repo / "reports/metrics.json").read_text())
    for role in ("teacher", "student"):
        report = json.loads((repo / f"reports/export/{role}.json").read_text())
        assert report["logit_difference"] <= 1e-4
        assert report["fp32_validation_accuracy"] == metrics[role]["validation_accuracy"]
        assert report["int8_validation_accuracy"] == metrics[f"{role}_onnx_int8"]["validation_accuracy"]
        assert metrics[f"{role}_onnx_fp32"]["accuracy"] == metrics[role]["accuracy"]
        # The params' default: the embedding tables in 4-bit blocks, unless a remedy kept fp32.
        assert report["embeddings"] == ("fp32" if report["remedy"] == "fp32_embeddings" else "int4")
    # The card's snippet, as a user runs it on the published folder.
    folder = repo / "models/student"
    session = ort.InferenceSession(str(folder / "onnx/model_quantized.onnx"))
    enc = AutoTokenizer.from_pretrained(folder)(["whats my balance"], return_tensors="np")
    logits = session.run(["logits"], {i.name: enc[i.name] for i in session.get_inputs()})[0]
    assert AutoConfig.from_pretrained(folder).id2label[int(np.argmax(logits[0]))] in INTENTS
    card = (folder / "README.md").read_text()
    assert "| distilled student, ONNX int8 |" in card and "onnx/model_quantized.onnx" in card
    assert ("`GatherBlockQuantized`" in card) == (json.loads(
        (repo / "reports/export/student.json").read_text())["embeddings"] == "int4")
    assert (repo / "models/teacher/onnx/model.onnx").exists()


def test_hub_token_reaches_no_output(repo):
    written = [repo / "mlflow.db", repo / "dvc.lock", *(repo / "reports").rglob("*"),
               *(repo / "models").rglob("*")]
    leaks = [p for p in written if p.is_file() and TOKEN.encode() in p.read_bytes()]
    assert leaks == []


def test_epoch_logs_reach_dvc_plots(repo):
    for stage in ("teacher", "baseline", "distill"):
        folder = repo / f"reports/live/{stage}/plots/metrics"
        assert len((folder / "eval/accuracy.tsv").read_text().strip().splitlines()) == 3  # header + 2 epochs
        written = {p.relative_to(folder).as_posix() for p in folder.rglob("*.tsv")}
        assert written <= {"loss.tsv", "eval/loss.tsv", "eval/accuracy.tsv", "eval/macro_f1.tsv",
                           "eval/distillation_loss.tsv"}, written  # no runtime, flos, train/*


def test_one_mlflow_run_per_stage(repo):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
    exp = client.get_experiment_by_name("distill-pipeline")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    assert exp.artifact_location == f"mlruns/{exp.experiment_id}"
    every = client.search_runs([exp.experiment_id])
    # One `dvc repro`: one parent run with the stages' runs inside.
    [parent] = [r for r in every if r.data.tags["stage"] == "pipeline"]
    runs = [r for r in every if r.data.tags["stage"] != "pipeline"]
    assert sorted(r.data.tags["stage"] for r in runs) == [
        "baseline", "card", "distill", "evaluate", "teacher"]
    assert {r.data.tags["mlflow.parentRunId"] for r in runs} == {parent.info.run_id}
    assert parent.info.status == "FINISHED" and parent.info.run_name.startswith("workspace@")
    assert all(r.info.run_name == f"{r.data.tags['stage']} · {parent.info.run_name}" for r in runs)
    evaluate = next(r for r in runs if r.data.tags["stage"] == "evaluate")
    assert {d.dataset.name for d in evaluate.inputs.dataset_inputs} == {
        "prepared/train", "prepared/validation", "prepared/test"}
    assert (repo / evaluate.info.artifact_uri / "metrics.json").is_file()
    summary = json.loads((repo / "reports/summary.json").read_text())
    assert parent.data.metrics["student.accuracy"] == summary["student"]["accuracy"]
    assert parent.data.metrics["student.accuracy"] == evaluate.data.metrics["student.accuracy"]
    distill = next(r for r in runs if r.data.tags["stage"] == "distill")
    assert distill.data.params["pipeline.alpha"] == "0.5"
    assert distill.data.params["batch.global"] == str(json.loads(
        (repo / "reports/student.json").read_text())["batch"]["global"])
    assert not [k for k in distill.data.metrics if k.startswith("batch")]
    assert "validation.accuracy" in distill.data.metrics
    history = client.get_metric_history(distill.info.run_id, "eval_accuracy")
    assert len({m.step for m in history}) == 2


def test_repro_again_does_nothing(repo):
    out = run(["dvc", "repro"], repo)
    assert "Data and pipelines are up to date" in out
    assert "Running stage" not in out


def test_a_params_typo_under_dvc_repro_costs_no_output(repo):
    params = (repo / "params.yaml").read_text()
    models = {p: p.read_bytes() for p in (repo / "models" / "trained").rglob("*.safetensors")}
    try:
        (repo / "params.yaml").write_text(params.replace("learning_rate:", "learnig_rate:", 1))
        out = subprocess.run(["dvc", "repro"], cwd=repo, capture_output=True, text=True)
        assert out.returncode != 0
        assert "unknown key 'teacher.train.learnig_rate'" in out.stdout + out.stderr
        assert "Running stage 'teacher'" not in out.stdout
        assert {p: p.read_bytes() for p in models} == models
    finally:
        (repo / "params.yaml").write_text(params)


def stages_run(out: str) -> set[str]:
    return {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")}


def test_exp_run_alpha_reruns_only_downstream_of_alpha(repo):
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "ran"], repo)
    out = run(["dvc", "exp", "run", "-S", "alpha=0.3"], repo)
    assert stages_run(out) == {"check", "distill", "export@student", "evaluate", "card"}


def mlflow_runs(repo: Path) -> list[dict]:
    """Every run of the project's mlflow.db, read by a new process, as a user reads it after
    the runs. In CI the pytest process's own client, which an earlier test had opened on the
    same database, once missed runs the database held (cause not found)."""
    code = (
        "import json, mlflow\n"
        "c = mlflow.MlflowClient('sqlite:///mlflow.db')\n"
        "e = c.get_experiment_by_name('distill-pipeline')\n"
        "print(json.dumps([dict(id=r.info.run_id, name=r.info.run_name, status=r.info.status,\n"
        "    start=r.info.start_time, end=r.info.end_time, artifact_uri=r.info.artifact_uri,\n"
        "    tags=r.data.tags, params=r.data.params) for r in c.search_runs([e.experiment_id])]))\n"
    )
    out = subprocess.run(["python", "-c", code], cwd=repo, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_two_queued_experiments_run_at_once_into_the_projects_mlflow(repo):
    """`dvc queue start -j 2`: each experiment runs in its own copy under .dvc/tmp/exps, at the
    same time as the other, and both log to the project's mlflow.db and mlruns/."""
    import dvc.api

    alphas = {"queued-alpha-02": "0.2", "queued-alpha-08": "0.8"}
    for name, alpha in alphas.items():
        run(["dvc", "exp", "run", "--queue", "--name", name, "-S", f"alpha={alpha}"], repo)
    run(["dvc", "queue", "start", "-j", "2"], repo)
    deadline = time.monotonic() + 900
    while any(s in (status := run(["dvc", "queue", "status"], repo)) for s in ("Queued", "Running")):
        assert time.monotonic() < deadline, status
        time.sleep(3)
    assert all(any(name in line and "Success" in line for line in status.splitlines())
               for name in alphas), status

    shown = {row["Experiment"]: row for row in dvc.api.exp_show(str(repo)) if row["Experiment"] in alphas}
    assert {name: str(row["alpha"]) for name, row in shown.items()} == alphas
    assert all(0.0 <= row["student.accuracy"] <= 1.0 for row in shown.values())

    runs = mlflow_runs(repo)
    parents = []
    for name, alpha in alphas.items():
        [parent] = [r for r in runs if r["tags"]["stage"] == "pipeline"
                    and r["tags"].get("dvc_experiment") == name]
        assert parent["name"] == name and parent["status"] == "FINISHED"
        assert parent["params"]["pipeline.alpha"] == alpha
        stages = {r["tags"]["stage"]: r for r in runs
                  if r["tags"].get("mlflow.parentRunId") == parent["id"]}
        assert sorted(stages) == ["card", "distill", "evaluate"]
        assert stages["distill"]["params"]["pipeline.alpha"] == alpha
        assert (repo / stages["evaluate"]["artifact_uri"] / "metrics.json").is_file()
        parents.append(parent)
    # The two pipeline runs were under way at the same moment.
    assert max(r["start"] for r in parents) < min(r["end"] for r in parents)


def test_exp_run_student_seed_repeats_the_students_with_the_teacher_fixed(repo):
    out = run(["dvc", "exp", "run", "-S", "student.seed=7"], repo)
    assert stages_run(out) == {"check", "baseline", "distill", "export@student", "evaluate", "card"}


def test_distilled_student_from_the_teacher_before_fine_tuning(repo):
    out = run(["dvc", "exp", "run", "-S", "student.from_teacher=pretrained"], repo)
    assert stages_run(out) == {"check", "distill", "export@student", "evaluate", "card"}  # the baseline's do not change
    from safetensors.torch import load_file

    key = "bert.embeddings.word_embeddings.weight"
    weights = {role: load_file(repo / "models/trained" / role / "model.safetensors")[key]
               for role in ("teacher", "baseline", "student")}
    # Frozen word embeddings show where each student started: both students from the teacher
    # as it was before fine-tuning, built under the same student seed.
    assert weights["student"].equal(weights["baseline"])
    assert not weights["student"].equal(weights["teacher"])
    assert "the teacher's, as before fine-tuning" in (repo / "models/student/README.md").read_text()


def test_a_transfer_set_of_edited_copies_reaches_the_distilled_student_only(repo):
    from datasets import load_from_disk

    out = run(["dvc", "exp", "run", "-S", "soft_targets.augment.copies=2"], repo)
    assert stages_run(out) == {"check", "soft_targets", "distill", "export@student", "evaluate", "card"}
    soft = load_from_disk(str(repo / "data/soft_targets"))
    train = soft["train"]["idx"]
    transfer = soft["transfer"]
    # Two edited copies of each training query, less those the edits left unchanged.
    assert len(train) < len(transfer) <= 2 * len(train)
    assert len(transfer["teacher_logits"][0]) == len(INTENTS)
    history = json.loads((repo / "reports/live/distill/history.json").read_text())["epochs"]
    batches = -(-(len(train) + len(transfer)) // 8)  # batch size 8: labelled and transfer rows
    assert history[-1]["step"] == 2 * batches


def test_an_ensemble_of_teachers_gives_the_mean_of_their_logits(repo):
    import numpy as np
    from datasets import load_from_disk

    from pipeline.inference import predict_logits
    from pipeline.models import load_classifier, load_saved_processor
    from pipeline.tasks import TextTask

    teacher = (repo / "models/trained/teacher/model.safetensors").read_bytes()
    out = run(["dvc", "exp", "run", "-S", "soft_targets.ensemble_seeds=[7]"], repo)
    # The first teacher stays as it was (and stays the published one).
    assert stages_run(out) == {"check", "ensemble", "soft_targets", "distill", "export@student",
                               "evaluate", "card"}
    assert (repo / "models/trained/teacher/model.safetensors").read_bytes() == teacher
    assert json.loads((repo / "models/trained/ensemble/members.json").read_text()) == {"seeds": [7]}
    member = repo / "models/trained/ensemble/seed-7"
    assert json.loads((repo / "reports/ensemble/seed-7.json").read_text())["validation"]
    assert json.loads((repo / "reports/ensemble/members.json").read_text()) == {"seeds": [7]}
    assert json.loads((repo / "reports/ensemble/live/seed-7/history.json").read_text())["epochs"]
    soft = load_from_disk(str(repo / "data/soft_targets"))["validation"]
    queries = load_from_disk(str(repo / "data/prepared"))["validation"]
    assert soft["idx"] == queries["idx"]
    each = [predict_logits(load_classifier(folder), load_saved_processor(folder), TextTask(),
                           queries["text"], 128, 64)
            for folder in (repo / "models/trained/teacher", member)]
    assert not np.allclose(each[0], each[1])  # another seed, another teacher
    np.testing.assert_allclose(soft["teacher_logits"], (each[0] + each[1]) / 2, atol=1e-5)
    metrics = json.loads((repo / "reports/metrics.json").read_text())
    assert metrics["ensemble"]["teachers"] == 2
    assert 0.0 <= metrics["ensemble"]["validation_accuracy"] <= 1.0
    assert metrics["student_vs_ensemble"]["accuracy_ratio"] == pytest.approx(
        metrics["student"]["accuracy"] / max(metrics["ensemble"]["accuracy"], 1e-12))


def comparable_numbers(repo: Path) -> dict:
    """metrics.json and the per-epoch histories, without the wall-clock timings."""
    numbers = json.loads((repo / "reports/metrics.json").read_text())
    numbers.pop("speed")  # timings: the only fields allowed to differ between runs
    for stage in ("teacher", "baseline", "distill"):
        numbers[stage] = json.loads((repo / f"reports/live/{stage}/history.json").read_text())
    return numbers


def test_forced_rerun_gives_the_same_numbers(repo):
    before = comparable_numbers(repo)
    run(["dvc", "repro", "--force"], repo)
    assert comparable_numbers(repo) == before


def locked_out(repo: Path, stage: str, path: str) -> str:
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    return next(o["md5"] for o in lock["stages"][stage]["outs"] if o["path"] == path)


def kill_distill_after_its_first_checkpoint(repo: Path) -> None:
    proc = subprocess.Popen(["dvc", "repro", "--force", "--single-item", "distill"], cwd=repo,
                            start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    checkpoints = repo / "models/checkpoints/distill"
    deadline = time.monotonic() + 600
    while not list(checkpoints.glob("checkpoint-*/trainer_state.json")):
        assert proc.poll() is None, "distill ended before its first checkpoint was seen"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (repo / "models/trained/student").exists()  # DVC cleared it; nothing half-written


def test_distill_killed_midway_resumes_to_the_same_model(repo):
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["student"]["train"]["epochs"] = 12  # a window to kill it in
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["dvc", "repro"], repo)
    expected = comparable_numbers(repo), locked_out(repo, "distill", "models/trained/student")

    kill_distill_after_its_first_checkpoint(repo)
    out = run(["dvc", "repro"], repo)
    assert "distill: resuming from" in out
    assert not (repo / "models/checkpoints/distill").exists()  # a completed stage leaves no checkpoints behind
    assert (comparable_numbers(repo), locked_out(repo, "distill", "models/trained/student")) == expected


def test_a_checkpoint_of_other_code_is_never_continued(repo):
    kill_distill_after_its_first_checkpoint(repo)
    loss_code = repo / "pipeline/distill.py"
    changed = loss_code.read_text().replace(
        'weights = {"hard": alpha, "soft": (1.0 - alpha) * temperature * temperature}',
        'weights = {"hard": alpha, "soft": (1.0 - alpha) * temperature}  # changed: no T^2')
    assert changed != loss_code.read_text()
    loss_code.write_text(changed)
    out = run(["dvc", "repro"], repo)
    assert "Running stage 'distill'" in out
    assert "resuming from" not in out
    assert "its checkpoints come from other params, code, starting weights or data" in out


# Last: it adds bench/ to the scratch repo.
def test_accuracy_bench_trains_the_usual_way_and_scores_the_stages_student(repo, tmp_path):
    shutil.copytree(ROOT / "bench", repo / "bench", ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path / "distill_accuracy.json"
    printed = run(["python", "-m", "bench.distill_accuracy", "--out", str(out)], repo)
    report = json.loads(out.read_text())
    metrics = json.loads((repo / "reports/metrics.json").read_text())
    # (b) is scored as the evaluate stage scores the student.
    assert report["b_distill_stage"]["accuracy"] == metrics["student"]["accuracy"]
    assert report["b_distill_stage"]["freeze_word_embeddings"] is True
    assert 0.0 <= report["a_usual"]["accuracy"] <= 1.0 and report["a_usual"]["train_seconds"] > 0
    assert report["test_rows"] == 12 and "b - a =" in printed
