import pytest
import torch
from transformers import Trainer, TrainingArguments

from pipeline.errors import UserError
from pipeline.models import build_student, build_teacher, reorder_labels, student_from_teacher

from conftest import LABELS, config, tiny_bert


def test_student_keeps_chosen_teacher_layers(teacher4):
    student = student_from_teacher(teacher4, [0, 2])
    assert student.config.num_hidden_layers == 2
    t, s = teacher4.state_dict(), student.state_dict()
    for new, old in enumerate([0, 2]):
        for key in t:
            prefix = f"bert.encoder.layer.{old}."
            if key.startswith(prefix):
                twin = key.replace(prefix, f"bert.encoder.layer.{new}.")
                assert torch.equal(s[twin], t[key]), twin
    for key in ("bert.embeddings.word_embeddings.weight", "bert.pooler.dense.weight",
                "classifier.weight", "classifier.bias"):
        assert torch.equal(s[key], t[key])
    assert student.config.id2label == teacher4.config.id2label


def test_student_matches_teacher_when_all_layers_kept(teacher4):
    student = student_from_teacher(teacher4, [0, 1, 2, 3]).eval()
    ids = torch.tensor([[1, 5, 7, 2]])
    assert torch.allclose(student(input_ids=ids).logits, teacher4(input_ids=ids).logits, atol=1e-6)


def test_student_layers_out_of_range(teacher4):
    with pytest.raises(UserError, match=r"layers \[4\].*0\.\.3"):
        student_from_teacher(teacher4, [0, 4])


def test_build_student_from_config_uses_label_set(teacher4):
    cfg = config("student", init="config", config_overrides={"num_hidden_layers": 1})
    student = build_student(cfg, LABELS, teacher4)
    assert student.config.num_hidden_layers == 1
    assert student.config.num_labels == len(LABELS)


def test_frozen_word_embeddings_stay_the_teachers_through_training(teacher4, tmp_path):
    cfg = config("student", layers=[0, 2], freeze_word_embeddings=True)
    student = build_student(cfg, LABELS, teacher4)
    before = {k: v.clone() for k, v in student.state_dict().items()}
    rows = [{"input_ids": [1, 5 + i, 7, 2], "labels": i % len(LABELS)} for i in range(8)]
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=4,
                             learning_rate=1e-2, report_to="none", use_cpu=True,
                             save_strategy="no")
    Trainer(model=student, args=args, train_dataset=rows).train()
    after = student.state_dict()
    key = "bert.embeddings.word_embeddings.weight"
    assert torch.equal(after[key], before[key])
    assert torch.equal(after[key], teacher4.state_dict()[key])
    # Everything else still trains, position embeddings included.
    for other in ("bert.embeddings.position_embeddings.weight",
                  "bert.encoder.layer.0.attention.self.query.weight", "classifier.weight"):
        assert not torch.equal(after[other], before[other]), other
    student.save_pretrained(tmp_path / "saved")
    reloaded = type(student).from_pretrained(tmp_path / "saved")
    assert torch.equal(reloaded.state_dict()[key], after[key])


def test_reorder_labels_permutes_head():
    model = tiny_bert(layers=1)
    ids = torch.tensor([[3, 4, 5]])
    before = model(input_ids=ids).logits[0]
    reordered = reorder_labels(model, ["transfer", "balance", "oos"])
    after = reordered(input_ids=ids).logits[0]
    assert torch.allclose(after, before[[2, 0, 1]])
    assert reordered.config.id2label[0] == "transfer"


def test_finetuned_teacher_label_mismatch(tmp_path):
    tiny_bert(layers=1).save_pretrained(tmp_path)
    cfg = config("teacher", model=str(tmp_path), finetune=False)
    with pytest.raises(UserError, match="other labels"):
        build_teacher(cfg, ["balance", "oos", "weather"])


def test_packaged_teacher_loads_offline():
    model = build_teacher(config("teacher", model="minilm-l6"), LABELS)
    assert model.config.num_hidden_layers == 6
    assert model.config.id2label == dict(enumerate(LABELS))


def test_a_hub_model_is_fetched_at_its_revision_and_its_commit_recorded(monkeypatch, tmp_path):
    from unittest import mock

    from pipeline import models

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = tmp_path / "snapshots" / commit
    with mock.patch.object(models, "snapshot_download", return_value=str(snapshot)) as fetch:
        found = models.locate("org/bert-tiny@v1.0")
    assert fetch.call_args.args == ("org/bert-tiny",) and fetch.call_args.kwargs["revision"] == "v1.0"
    assert found == models.ModelSource(str(snapshot), "org/bert-tiny", commit)
    assert models.model_source("minilm-l6") == {
        "hub_id": "sentence-transformers/all-MiniLM-L6-v2",
        "revision": "1110a243fdf4706b3f48f1d95db1a4f5529b4d41"}
    assert models.model_source("cnn") == {"hub_id": None, "revision": None}
