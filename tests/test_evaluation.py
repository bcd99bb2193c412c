"""The evaluation's figures mean what their labels say: macro-F1 and the per-class table share a
label set, latency is timed on a seeded random sample, the models take turns in every timing,
and quality and speed run in one numerics."""

import csv

import numpy as np
import pytest
import torch
from conftest import LABELS, ROOT, tiny_bert
from datasets import Dataset, DatasetDict
from transformers import BertTokenizer

from pipeline import evaluation, inference, speed
from pipeline.config import load_params
from pipeline.evaluation import evaluate_models, write_figures
from pipeline.tasks import get_task

WORDS = ["what", "is", "my", "balance", "send", "money", "to", "mom", "tell", "a", "joke"]
# The test split has no `transfer` query (label 2), and the models never predict it: the case
# where "every label" and "the labels of the test split" differ.
TEST = Dataset.from_dict({
    "text": ["what is my balance", "my balance", "balance to mom", "what is a balance",
             "tell a joke", "what is a joke", "joke to my mom", "tell mom a joke"],
    "label": [0, 0, 0, 0, 1, 1, 1, 1],
})
# The evaluation reads validation too (accuracy to choose settings by, oos thresholds).
SPLITS = DatasetDict(test=TEST, validation=TEST.select(range(6)))
TEXT = get_task("text-classification")


def tokenizer() -> BertTokenizer:
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    return BertTokenizer(vocab={w: i for i, w in enumerate(vocab)})


def never_transfer(seed: int, layers: int):
    model = tiny_bert(layers=layers, seed=seed)
    with torch.no_grad():
        model.classifier.bias[LABELS.index("transfer")] = -1e4
    return model


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    out = {}
    for seed, (role, layers) in enumerate((("teacher", 2), ("baseline", 1), ("student", 1))):
        out[role] = root / role
        never_transfer(seed, layers).save_pretrained(out[role])
        tokenizer().save_pretrained(out[role])
    return out


@pytest.fixture(scope="module")
def params():
    params = load_params(ROOT / "params.yaml")
    small = params.evaluate.model_copy(update=dict(
        batch_size=3, latency_runs=4, latency_warmup=1, latency_block=2, throughput_batch_size=3))
    return params.model_copy(update={"evaluate": small})


def test_macro_f1_is_the_mean_of_the_per_class_table(folders, params, tmp_path):
    metrics, logits = evaluate_models(folders, SPLITS, LABELS, params)
    assert not any((x.argmax(-1) == LABELS.index("transfer")).any() for x in logits.values())
    write_figures(tmp_path, np.asarray(TEST["label"]), logits, LABELS, metrics, params)
    with (tmp_path / "per_class_f1.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["label"] for r in rows] == ["balance", "oos"]
    for role in folders:
        column = [float(r[f"{role}_f1"]) for r in rows]
        # The table rounds to 4 decimals.
        assert metrics[role]["macro_f1"] == pytest.approx(np.mean(column), abs=1e-4), role


def forwards(models: dict, log: list) -> None:
    """Append (role, dtype of the logits) to `log` at every forward pass of each model."""
    for role, model in models.items():
        model.classifier.register_forward_hook(
            lambda module, args, out, role=role: log.append((role, out.dtype)))


class RecordingTask:
    """The text task, noting the inputs of every batch it makes."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def batch(self, processor, inputs, max_length):
        self.batches.append(list(inputs))
        return TEXT.batch(processor, inputs, max_length)


def two_models(tasks: dict[str, RecordingTask], calls: list) -> dict[str, inference.Served]:
    models = {"teacher": never_transfer(0, 2), "student": never_transfer(1, 1)}
    forwards(models, calls)
    return {role: inference.pytorch(m, tokenizer(), tasks[role], 16) for role, m in models.items()}


def test_latency_times_a_seeded_random_sample_in_blocks_of_turns():
    queries = [f"{w} {i}" for i, w in enumerate(WORDS * 5)]
    tasks, calls = {"teacher": RecordingTask(), "student": RecordingTask()}, []
    out = speed.latency_ms(two_models(tasks, calls), queries, runs=6, warmup=2, block=2, seed=7)
    assert set(out) == {"teacher", "student"}
    assert all(0 < v["latency_ms_median"] <= v["latency_ms_p95"] for v in out.values())
    timed = [role for role, _ in calls[2 * 2:]]  # after each model's 2 warm-up queries
    # Turns of one untimed and two timed queries each.
    assert timed == (["teacher"] * 3 + ["student"] * 3) * 3
    sample = [b[0] for b in tasks["teacher"].batches]
    assert sample == [b[0] for b in tasks["student"].batches]  # the same queries for both
    assert sample != queries[:6]
    again = {"teacher": RecordingTask(), "student": RecordingTask()}
    speed.latency_ms(two_models(again, []), queries, runs=6, warmup=2, block=2, seed=7)
    assert [b[0] for b in again["teacher"].batches] == sample


def test_throughput_takes_turns_in_blocks_on_the_same_batches():
    queries = [f"{w} {i}" for i, w in enumerate(WORDS * 2)]  # 22: 4 batches of 6, the last short
    tasks, calls = {"teacher": RecordingTask(), "student": RecordingTask()}, []
    out = speed.throughput(two_models(tasks, calls), queries, batch_size=6, block=2)
    assert set(out) == {"teacher", "student"} and all(v > 0 for v in out.values())
    # A warm-up each, then turns of one untimed and two timed batches.
    assert [role for role, _ in calls] == ["teacher", "student"] + (
        ["teacher"] * 3 + ["student"] * 3) * 2
    batches = tasks["teacher"].batches
    assert batches == tasks["student"].batches
    timed = [b for i, b in enumerate(batches[1:]) if i % 3]
    assert sum(timed, []) == queries


def test_serving_numerics_is_fp32_on_the_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert inference.serving_numerics() == "fp32"
    model, calls = tiny_bert(), []
    forwards({"teacher": model}, calls)
    inference.predict_logits(model, tokenizer(), TEXT, ["what is my balance"], 2, 16)
    assert calls == [("teacher", torch.float32)]


@pytest.mark.parametrize("numerics", ["fp32", "bf16"])
def test_quality_and_speed_run_in_the_serving_numerics(folders, params, monkeypatch, numerics):
    """Every forward pass of the evaluation, scored or timed, runs in serving_numerics(), and
    metrics.json says which (bf16 autocast works on the CPU too)."""
    monkeypatch.setattr(inference, "serving_numerics", lambda: numerics)
    calls, load = [], evaluation.load_classifier

    def load_and_watch(folder, task):
        model = load(folder, task)
        forwards({folder.name: model}, calls)
        return model

    monkeypatch.setattr(evaluation, "load_classifier", load_and_watch)
    metrics, _ = evaluate_models(folders, SPLITS, LABELS, params)
    assert metrics["numerics"] == numerics
    cfg, rows = params.evaluate, len(TEST)
    throughput_batches = -(-rows // cfg.throughput_batch_size)
    # Each block of timed queries or batches starts with an untimed one.
    batches = -(-rows // cfg.batch_size) + -(-len(SPLITS["validation"]) // cfg.batch_size) \
        + cfg.latency_warmup + cfg.latency_runs + -(-cfg.latency_runs // cfg.latency_block) \
        + 1 + throughput_batches + -(-throughput_batches // cfg.latency_block)
    assert len(calls) == 3 * batches  # test, validation, latency and throughput, all watched
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[numerics]
    assert {d for _, d in calls} == {dtype}


def test_threshold_from_validation_and_paired_test_on_test(folders, params):
    metrics, logits = evaluate_models(folders, SPLITS, LABELS, params)
    labels, oos_id = np.asarray(TEST["label"]), LABELS.index("oos")
    validation = SPLITS["validation"]
    for role, x in logits.items():
        val = inference.predict_logits(
            evaluation.load_classifier(folders[role], TEXT), tokenizer(), TEXT,
            validation["text"], 4, params.data.max_length)
        val_probs = evaluation.probabilities(val)
        threshold = evaluation.oos.choose(np.asarray(validation["label"]), val_probs, oos_id)
        assert metrics[role]["oos_threshold"] == threshold
        assert metrics[role]["validation_accuracy"] == pytest.approx(
            (val.argmax(-1) == np.asarray(validation["label"])).mean())
        preds = evaluation.oos.apply(evaluation.probabilities(x), threshold, oos_id)
        assert metrics[role]["thresholded"]["accuracy"] == pytest.approx((preds == labels).mean())
    student, baseline = logits["student"].argmax(-1), logits["baseline"].argmax(-1)
    paired = metrics["student_vs_baseline"]
    assert paired["only_student_right"] == int(((student == labels) & (baseline != labels)).sum())
    assert paired["only_baseline_right"] == int(((baseline == labels) & (student != labels)).sum())


@pytest.fixture(scope="module")
def exports(folders, tmp_path_factory):
    from pipeline import onnx_export

    root = tmp_path_factory.mktemp("onnx")
    validation = SPLITS["validation"]
    for role in ("teacher", "student"):
        (root / role).mkdir()
        onnx_export.export(
            evaluation.load_classifier(folders[role], TEXT), tokenizer(), TEXT,
            validation["text"], np.asarray(validation["label"]), root / role, max_length=16,
            batch_size=4, logits_tolerance=1e-4, int8_tolerance=1.0, name=role)
    return {role: root / role for role in ("teacher", "student")}


def test_onnx_exports_are_measured_beside_the_pytorch_models(folders, exports, params, tmp_path):
    metrics, logits = evaluate_models(folders, SPLITS, LABELS, params, exports)
    served = ["teacher_onnx_fp32", "teacher_onnx_int8", "student_onnx_fp32", "student_onnx_int8"]
    assert set(served) <= set(metrics) and set(served) <= set(metrics["speed"])
    for role in ("teacher", "student"):
        # fp32 ONNX is the PyTorch model: the same predictions, the same parameters.
        np.testing.assert_allclose(logits[f"{role}_onnx_fp32"], logits[role], atol=1e-4)
        assert metrics[f"{role}_onnx_fp32"]["accuracy"] == metrics[role]["accuracy"]
        assert metrics[f"{role}_onnx_int8"]["parameters"] == metrics[role]["parameters"]
        int8 = exports[role] / "model_quantized.onnx"
        assert metrics[f"{role}_onnx_int8"]["size_mb"] == int8.stat().st_size / 2**20
    deployed = metrics["deployed_vs_teacher"]
    assert deployed["model"] == "student_onnx_int8"
    assert deployed["size_ratio"] == pytest.approx(
        metrics["student_onnx_int8"]["size_mb"] / metrics["teacher"]["size_mb"])
    assert metrics["speed"]["deployed_speedup"] > 0
    write_figures(tmp_path, np.asarray(TEST["label"]), logits, LABELS, metrics, params)
    assert (tmp_path / "accuracy_vs_latency.png").stat().st_size > 0
    with (tmp_path / "per_class_f1.csv").open() as f:  # the PyTorch roles only
        assert set(next(csv.DictReader(f))) == {"label", "teacher_f1", "baseline_f1", "student_f1"}
