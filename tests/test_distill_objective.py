"""The distill stage trains on the same objective as the usual online-teacher code: the loss it
computes from the cached teacher logits equals the loss with the teacher run on the batch."""

import torch
from datasets import Dataset, DatasetDict
from transformers import DataCollatorWithPadding, TrainingArguments

from bench.usual_distillation import OnlineDistillationTrainer
from conftest import config
from pipeline import soft_targets
from pipeline.distill import DistillationTrainer
from pipeline.models import build_teacher, load_tokenizer, student_from_teacher
from pipeline.tasks import TextTask
from pipeline.training import ClassificationCollator

NAMES = ["balance", "oos", "transfer"]
TEXTS = ["whats my balance", "send twenty dollars to my sister for the concert tickets tonight",
         "tell me a joke", "move 500 from checking to savings please",
         "how much is left", "who won the game last night in overtime"]
LABELS = [0, 2, 1, 2, 0, 1]


def test_cached_teacher_logits_give_the_online_teachers_loss(tmp_path):
    tiny = {"num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 2,
            "intermediate_size": 64}
    torch.manual_seed(0)
    teacher = build_teacher(config("teacher", config_overrides=tiny), NAMES).eval()
    student = student_from_teacher(teacher, [1])
    tokenizer = load_tokenizer("minilm-l6")
    ds = Dataset.from_dict({"idx": list(range(len(TEXTS))), "text": TEXTS, "label": LABELS})
    # The cache is written in its own length-sorted batches, padded unlike the training batch.
    text = TextTask()
    soft = soft_targets.compute([(teacher, tokenizer)], text, DatasetDict(train=ds, validation=ds), 4, 64)
    rows = text.encode(DatasetDict(train=soft_targets.attach(ds, soft["train"])), tokenizer, 64)["train"]
    features = [rows[i] for i in range(len(rows))]
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True)

    cached = DistillationTrainer(model=student, args=args, alpha=0.3, temperature=3.0)
    online = OnlineDistillationTrainer(model=student, args=args, teacher_model=teacher, alpha=0.3,
                                       temperature=3.0)
    student.eval()  # dropout off: both losses see the same student outputs
    with torch.no_grad():
        loss_cached = cached.compute_loss(
            student, ClassificationCollator(tokenizer, (soft_targets.TEACHER_LOGITS,))(features))
        usual_batch = DataCollatorWithPadding(tokenizer)(
            [{k: f[k] for k in tokenizer.model_input_names} | {"labels": f["label"]}
             for f in features])
        loss_online = online.compute_loss(student, usual_batch)
    assert loss_cached.item() > 0.1
    assert abs(loss_cached.item() - loss_online.item()) < 1e-5


def test_validation_loss_is_cross_entropy_and_the_objective_has_its_own_name(tmp_path):
    import torch.nn.functional as F

    from pipeline.distill import distillation_loss

    tiny = {"num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 2,
            "intermediate_size": 64}
    torch.manual_seed(0)
    teacher = build_teacher(config("teacher", config_overrides=tiny), NAMES).eval()
    student = student_from_teacher(teacher, [1]).eval()
    tokenizer = load_tokenizer("minilm-l6")
    ds = Dataset.from_dict({"idx": list(range(len(TEXTS))), "text": TEXTS, "label": LABELS})
    text = TextTask()
    soft = soft_targets.compute([(teacher, tokenizer)], text, DatasetDict(train=ds, validation=ds), 4, 64)
    rows = text.encode(DatasetDict(validation=soft_targets.attach(ds, soft["validation"])),
                       tokenizer, 64)["validation"]
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True,
                             per_device_eval_batch_size=len(rows), remove_unused_columns=False)
    collate = ClassificationCollator(tokenizer, (soft_targets.TEACHER_LOGITS,))
    trainer = DistillationTrainer(model=student, args=args, alpha=0.3, temperature=3.0,
                                  data_collator=collate, eval_dataset=rows)
    metrics = trainer.evaluate()

    batch = collate([rows[i] for i in range(len(rows))])
    teacher_logits, labels = batch.pop(soft_targets.TEACHER_LOGITS), batch.pop("labels")
    with torch.no_grad():
        logits = student(**batch).logits
    cross_entropy = F.cross_entropy(logits, labels).item()
    objective = distillation_loss(logits, teacher_logits, labels, 0.3, 3.0).item()
    assert abs(objective - cross_entropy) > 0.01  # the two differ, so the test can tell them apart
    assert abs(metrics["eval_loss"] - cross_entropy) < 1e-5
    assert abs(metrics["eval_distillation_loss"] - objective) < 1e-5
