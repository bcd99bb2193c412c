"""The distillation loss (Hinton et al. 2015) and the Trainer subclass that uses it."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import Trainer

from pipeline.soft_targets import TEACHER_LOGITS


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    alpha: float,
    temperature: float,
) -> torch.Tensor:
    """alpha * CE(student, labels) + (1 - alpha) * T^2 * KL(teacher_T || student_T).

    `alpha` weights the hard-label loss, as in the book and torchdistill. The T^2 factor keeps
    the soft-target gradients on the scale of the hard ones when T changes (Hinton et al. 2015).
    """
    hard = F.cross_entropy(student_logits, labels)
    if alpha == 1.0:
        return hard
    t = temperature
    soft = F.kl_div(
        F.log_softmax(student_logits.float() / t, dim=-1),
        F.log_softmax(teacher_logits.float() / t, dim=-1),
        reduction="batchmean",
        log_target=True,
    )
    return alpha * hard + (1.0 - alpha) * t * t * soft


class DistillationTrainer(Trainer):
    """A Trainer whose loss mixes hard labels with the teacher's cached logits.

    The teacher never runs here: its logits come with each batch (column `teacher_logits`,
    written once by the soft_targets stage), so a step costs what a plain fine-tuning step costs.

    Training minimises the distillation objective. Evaluation reports cross-entropy as
    `eval_loss`, as every other model's evaluation does, so that validation losses compare
    across stages; the objective on the validation split is `eval_distillation_loss`.
    """

    def __init__(self, *args, alpha: float, temperature: float, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.alpha = alpha
        self.temperature = temperature
        # (batch objective, batch size) while an evaluation runs; None while training.
        self._objective: list[tuple[float, int]] | None = None

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        teacher_logits = inputs.pop(TEACHER_LOGITS)
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        objective = distillation_loss(
            outputs.logits, teacher_logits, labels, self.alpha, self.temperature
        )
        if self._objective is None:
            loss = objective
        else:
            loss = F.cross_entropy(outputs.logits.float(), labels)
            self._objective.append((objective.item(), len(labels)))
        return (loss, outputs) if return_outputs else loss

    def evaluation_loop(self, *args, metric_key_prefix: str = "eval", **kwargs):
        self._objective = []
        try:
            output = super().evaluation_loop(*args, metric_key_prefix=metric_key_prefix, **kwargs)
        finally:
            objective, self._objective = self._objective, None
        total = sum(n for _, n in objective)
        output.metrics[f"{metric_key_prefix}_distillation_loss"] = (
            sum(value * n for value, n in objective) / total
        )
        return output
