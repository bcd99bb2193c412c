"""The usual way of writing distillation, as a reference for the benchmark and the tests.

The DistillationTrainer of "Natural Language Processing with Transformers" (Tunstall, von Werra,
Wolf; O'Reilly 2022), chapter 8, which most notebooks copy: the teacher runs forward inside
`compute_loss` on every step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel, Trainer


class OnlineDistillationTrainer(Trainer):
    def __init__(self, *args, teacher_model: PreTrainedModel, alpha: float, temperature: float,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.teacher = teacher_model.to(self.args.device).eval()
        self.alpha = alpha
        self.temperature = temperature

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(**inputs)
        with torch.no_grad():
            teacher_logits = self.teacher(**inputs).logits
        t = self.temperature
        soft = F.kl_div(F.log_softmax(outputs.logits / t, dim=-1),
                        F.softmax(teacher_logits / t, dim=-1), reduction="batchmean")
        loss = self.alpha * outputs.loss + (1 - self.alpha) * t * t * soft
        return (loss, outputs) if return_outputs else loss
