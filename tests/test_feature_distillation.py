"""Hidden-state terms of the distillation objective, against hand computations, and a student
trained with them that saves and loads as a plain model."""

import math

import pytest
import torch
from conftest import config
from datasets import Dataset, DatasetDict
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification, TrainingArguments

from pipeline import soft_targets
from pipeline.distill import (
    TERMS,
    DistillationTrainer,
    LossInputs,
    hidden_cosine,
    hidden_mse,
    objective,
    objective_weights,
)
from pipeline.models import build_teacher, load_tokenizer, student_from_teacher
from pipeline.tasks import TextTask
from pipeline.training import ClassificationCollator

# One sequence of two tokens, the second padding; embeddings then one layer (student) or two
# (teacher), width 2.
MASK = torch.tensor([[1, 0]])
STUDENT = (torch.zeros(1, 2, 2), torch.tensor([[[1.0, 0.0], [9.0, 9.0]]]))
TEACHER = (torch.zeros(1, 2, 2), torch.tensor([[[0.0, 5.0], [1.0, 1.0]]]),
           torch.tensor([[[1.0, 1.0], [7.0, -7.0]]]))
LOGITS = torch.zeros(1, 3)
NAMES = ["balance", "oos", "transfer"]


def inputs(layer_map, projection=None):
    return LossInputs(LOGITS, LOGITS, torch.tensor([0]), 1.0, MASK, STUDENT, TEACHER,
                      tuple(layer_map), projection)


def test_cosine_by_hand():
    # Token 0 only: student (1, 0) against teacher layer 1's (1, 1): cos = 1 / sqrt(2).
    assert hidden_cosine(inputs([1])).item() == pytest.approx(1 - 1 / math.sqrt(2))
    # Against teacher layer 0's (0, 5): orthogonal.
    assert hidden_cosine(inputs([0])).item() == pytest.approx(1.0)


def test_mse_through_the_projection_by_hand():
    projection = torch.nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        projection.weight.copy_(torch.tensor([[2.0, 0.0], [0.0, 1.0]]))
    # (2, 0) against (1, 1): ((2 - 1)^2 + (0 - 1)^2) / 2 = 1.
    assert hidden_mse(inputs([1], projection)).item() == pytest.approx(1.0)


def test_the_objective_is_assembled_in_one_place():
    features = config("features", loss="hidden_cosine", weight=0.25)
    assert objective_weights(0.5, 4.0, features) == {"hard": 0.5, "soft": 8.0,
                                                     "hidden_cosine": 0.25}
    assert objective_weights(1.0, 4.0) == {"hard": 1.0}
    assert set(objective_weights(0.0, 2.0, features)) == {"soft", "hidden_cosine"}
    x = inputs([1])
    weights = {"hard": 0.5, "hidden_cosine": 0.25}
    expected = 0.5 * TERMS["hard"](x) + 0.25 * TERMS["hidden_cosine"](x)
    assert objective(x, weights).item() == pytest.approx(expected.item())


@pytest.mark.parametrize("loss", ["hidden_cosine", "hidden_mse"])
def test_a_student_trained_with_a_hidden_term_saves_as_a_plain_model(loss, tmp_path):
    torch.manual_seed(0)
    tiny = {"num_hidden_layers": 4, "hidden_size": 32, "num_attention_heads": 2,
            "intermediate_size": 64}
    teacher = build_teacher(config("teacher", config_overrides=tiny), NAMES).eval()
    student = student_from_teacher(teacher, [1, 3])
    plain_keys = set(student.state_dict())
    tokenizer = load_tokenizer("minilm-l6")
    texts = ["whats my balance", "send money to mom", "tell me a joke", "move cash please"]
    ds = Dataset.from_dict({"idx": [0, 1, 2, 3], "text": texts, "label": [0, 2, 1, 2]})
    soft = soft_targets.compute([(teacher, tokenizer)], TextTask(), DatasetDict(train=ds, validation=ds),
                                4, 32)
    train = TextTask().encode(DatasetDict(train=soft_targets.attach(ds, soft["train"])),
                              tokenizer, 32)["train"]
    args = TrainingArguments(output_dir=str(tmp_path / "run"), report_to="none", use_cpu=True,
                             num_train_epochs=2, per_device_train_batch_size=2,
                             remove_unused_columns=False, save_strategy="no")
    trainer = DistillationTrainer(
        model=student, args=args, train_dataset=train, eval_dataset=train,
        data_collator=ClassificationCollator(tokenizer, (soft_targets.TEACHER_LOGITS,)),
        alpha=0.5, temperature=2.0, features=config("features", loss=loss, weight=1.0),
        teacher=teacher, layer_map=(1, 3))
    if loss == "hidden_mse":
        projection = getattr(student, DistillationTrainer.PROJECTION)
        before = projection.weight.detach().clone()
    trainer.train()
    metrics = trainer.evaluate()
    assert metrics["eval_distillation_loss"] > 0
    if loss == "hidden_mse":
        assert not projection.weight.equal(before)  # the projection trained with the student
    student.save_pretrained(tmp_path / "saved")
    assert set(load_file(tmp_path / "saved" / "model.safetensors")) == plain_keys
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "saved")
    assert set(loaded.state_dict()) == plain_keys
