"""`dvc repro` of the same pipeline for images: configs/digits.yaml (sklearn:digits, CNN teacher,
MLP student) with few epochs, in a scratch git + DVC repo."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import yaml
from huggingface_hub import ModelCard

from conftest import ROOT, scratch_project
from conftest import run_checked as run


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("images")
    params = yaml.safe_load((ROOT / "configs" / "digits.yaml").read_text())
    params["teacher"]["train"]["epochs"] = 3
    # The teacher trains on shifted images (pipeline/jitter.py), as Hinton et al.'s did.
    params["teacher"]["jitter"] = 1
    params["student"]["train"]["epochs"] = 3
    params["evaluate"].update(latency_runs=5, latency_warmup=1)
    scratch_project(repo, params)
    run(["dvc", "repro"], repo)
    return repo


def test_every_stage_ran_and_the_models_learned(repo):
    metrics = json.loads((repo / "reports/metrics.json").read_text())
    for role in ("teacher", "baseline", "student"):
        # 10 classes: chance is 0.1; three epochs on digits reach far beyond it.
        assert metrics[role]["accuracy"] > 0.5, (role, metrics[role])
        assert "oos_recall" not in metrics[role]  # digits have no out-of-scope class
        assert metrics["speed"][role]["latency_ms_median"] > 0
    assert metrics["student"]["parameters"] < metrics["teacher"]["parameters"]
    data = json.loads((repo / "reports/data.json").read_text())
    assert data["rows"] == {"train": 1293, "validation": 144, "test": 360}
    assert (data["image_height"], data["image_width"], data["image_channels"]) == (8, 8, 1)


def test_plots_are_written_for_images(repo):
    for name in ("top_confusions.png", "per_class_f1.png", "reliability.png",
                 "accuracy_vs_latency.png", "confusion_student.csv", "per_class_f1.csv"):
        assert (repo / "reports/plots" / name).stat().st_size > 0, name


def test_student_folder_is_an_image_pipeline_model_with_card(repo):
    from PIL import Image
    from transformers import pipeline as hf_pipeline

    from pipeline import vision_models  # noqa: F401  registers the built-in architectures

    folder = repo / "models/student"
    classifier = hf_pipeline("image-classification", model=str(folder))
    digit = Image.new("L", (8, 8), 0)  # the pipeline opens it as RGB; the processor makes it L
    assert classifier(digit)[0]["label"] in [str(d) for d in range(10)]
    card = ModelCard.load(folder / "README.md")
    assert card.data.pipeline_tag == "image-classification"
    assert "knowledge-distillation" in card.data.tags
    teacher_card = (repo / "models/teacher/README.md").read_text()
    assert "| input jitter | each training image shifted by up to 1 pixel along each axis |" \
        in teacher_card
    assert "input jitter" not in card.text
    assert "MLP (256-256 hidden units)" in card.text and "trust_remote_code=True" in card.text
    assert "max sequence length" not in card.text
    teacher_card = (repo / "models/teacher/README.md").read_text()
    assert "CNN (64-128 channels, 512 hidden units)" in teacher_card


def test_experiments_compare_for_images(repo):
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "ran"], repo)
    run(["python", "-m", "pipeline.compare"], repo)
    # By default the comparison goes to a git-ignored folder, not over a committed record.
    table = (repo / "reports/local/compare.md").read_text()
    assert re.search(r"\| 0\.1 +\| 8 +\|", table)
    assert "oos recall" not in table and "in-scope acc" not in table
    assert (repo / "reports/local/compare.png").stat().st_size > 10_000
    assert not (repo / "reports/compare.md").exists()


def test_the_card_s_onnx_snippet_classifies_an_image(repo, tmp_path):
    folder = repo / "models/student"
    card = (folder / "README.md").read_text()
    snippet = re.search(r"```python\n(import onnxruntime.*?)```", card, re.S).group(1)
    from PIL import Image

    Image.new("L", (8, 8), 0).save(tmp_path / "digit.png")
    # As a user runs it: from the project folder, which holds the published models/student.
    snippet = snippet.replace('"digit.png"', repr(str(tmp_path / "digit.png")))
    out = subprocess.run([sys.executable, "-c", snippet], cwd=repo, capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() in [str(d) for d in range(10)]


def test_a_transfer_set_of_shifted_images_reaches_the_distilled_student_only(repo):
    from datasets import load_from_disk

    out = run(["dvc", "exp", "run", "-S", "soft_targets.augment.copies=1"], repo)
    ran = set(re.findall(r"Running stage '([^']+)'", out))
    assert ran == {"check", "soft_targets", "distill", "export@student", "evaluate", "card"}
    soft = load_from_disk(str(repo / "data/soft_targets"))
    prepared = load_from_disk(str(repo / "data/prepared"))["train"]
    transfer = soft["transfer"]
    assert len(transfer) == len(prepared) == 1293
    shifted = sum(np.asarray(a).tobytes() != np.asarray(b).tobytes()
                  for a, b in zip(transfer["image"], prepared["image"]))
    assert shifted > 1000  # a copy left in place is 1 in 25 (shift 2)
    history = json.loads((repo / "reports/live/distill/history.json").read_text())["epochs"]
    batches = -(-2 * 1293 // 64)  # labelled and transfer rows, the student batch of 64
    assert history[-1]["step"] == 3 * batches
