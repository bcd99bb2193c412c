"""The distillation objective, assembled from named loss terms (as torchdistill chooses losses
by config), and the Trainer subclass that minimises it.

    objective = sum over terms of weight * TERMS[name](batch)

`objective_weights` is the one place that says which terms a run uses and how much each
weighs: the hard-label and soft-target terms of Hinton et al. 2015 by `alpha` and
`temperature`, and a hidden-state term chosen by params `features`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel, Trainer

from pipeline.config import FeaturesConfig
from pipeline.errors import UserError
from pipeline.soft_targets import NO_LABEL, TEACHER_LOGITS


@dataclass
class LossInputs:
    """What the terms read. Hidden states are the models' `hidden_states` tuples (embeddings
    first, then each layer's output); `layer_map` pairs student layer k with teacher layer
    layer_map[k]."""

    student_logits: torch.Tensor
    teacher_logits: torch.Tensor
    labels: torch.Tensor
    temperature: float = 1.0
    attention_mask: torch.Tensor | None = None
    student_hidden: tuple[torch.Tensor, ...] | None = None
    teacher_hidden: tuple[torch.Tensor, ...] | None = None
    layer_map: tuple[int, ...] = ()
    projection: torch.nn.Module | None = None


def hard_labels(x: LossInputs) -> torch.Tensor:
    """Cross-entropy with the labels: the mean over the labelled rows of the batch (rows of the
    transfer set have none), 0 when it has none."""
    labelled = x.labels != NO_LABEL
    if not labelled.any():
        return x.student_logits.new_zeros(())
    return F.cross_entropy(x.student_logits[labelled], x.labels[labelled])


def soft_targets(x: LossInputs) -> torch.Tensor:
    """KL(teacher_T || student_T) at temperature T, over all rows (batch mean)."""
    t = x.temperature
    return F.kl_div(
        F.log_softmax(x.student_logits.float() / t, dim=-1),
        F.log_softmax(x.teacher_logits.float() / t, dim=-1),
        reduction="batchmean",
        log_target=True,
    )


def _layer_pairs(x: LossInputs):
    if x.student_hidden is None or x.teacher_hidden is None:
        raise ValueError("a hidden-state term needs the student's and the teacher's hidden states")
    mask = (x.attention_mask if x.attention_mask is not None
            else torch.ones(x.student_hidden[0].shape[:2], device=x.student_logits.device)).bool()
    for k, j in enumerate(x.layer_map):
        # hidden_states[0] is the embeddings' output; layer i's output is hidden_states[i + 1].
        yield x.student_hidden[k + 1][mask].float(), x.teacher_hidden[j + 1][mask].float()


def hidden_cosine(x: LossInputs) -> torch.Tensor:
    """DistilBERT's hidden-state loss (Sanh et al. 2019): 1 - cosine similarity of the student's
    and the teacher's hidden state of every real token, averaged over tokens and mapped layers."""
    losses = [(1 - F.cosine_similarity(s, t, dim=-1)).mean() for s, t in _layer_pairs(x)]
    return torch.stack(losses).mean()


def hidden_mse(x: LossInputs) -> torch.Tensor:
    """TinyBERT's hidden-state loss (Jiao et al. 2020): mean squared error between the
    student's hidden states, through a learned linear projection to the teacher's width, and
    the teacher's, over every real token, averaged over mapped layers."""
    if x.projection is None:
        raise ValueError("hidden_mse needs its projection")
    losses = [F.mse_loss(x.projection(s), t) for s, t in _layer_pairs(x)]
    return torch.stack(losses).mean()


TERMS: dict[str, Callable[[LossInputs], torch.Tensor]] = {
    "hard": hard_labels,
    "soft": soft_targets,
    "hidden_cosine": hidden_cosine,
    "hidden_mse": hidden_mse,
}
# Terms that read hidden states, which only a teacher run on the batch gives.
HIDDEN_TERMS = ("hidden_cosine", "hidden_mse")


def objective_weights(alpha: float, temperature: float,
                      features: FeaturesConfig | None = None) -> dict[str, float]:
    """The terms of the objective and their weights; terms of weight 0 are left out.

    `alpha` weights the hard-label loss, as in the book and torchdistill; the soft-target term
    weighs (1 - alpha) * T^2, the T^2 keeping its gradients on the scale of the hard ones when
    T changes (Hinton et al. 2015)."""
    weights = {"hard": alpha, "soft": (1.0 - alpha) * temperature * temperature}
    if features is not None and features.loss is not None:
        weights[features.loss] = features.weight
    return {name: w for name, w in weights.items() if w}


def objective(x: LossInputs, weights: dict[str, float]) -> torch.Tensor:
    total = None
    for name, weight in weights.items():
        term = weight * TERMS[name](x)
        total = term if total is None else total + term
    return total


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    alpha: float,
    temperature: float,
) -> torch.Tensor:
    """alpha * CE(student, labels) + (1 - alpha) * T^2 * KL(teacher_T || student_T)."""
    return objective(LossInputs(student_logits, teacher_logits, labels, temperature),
                     objective_weights(alpha, temperature))


class DistillationTrainer(Trainer):
    """A Trainer whose loss is the distillation objective.

    The teacher's logits come with each batch (column `teacher_logits`, written once by the
    soft_targets stage), so a step with the logit terms alone costs what a plain fine-tuning
    step costs. A hidden-state term runs `teacher` on the batch as well (hidden states of
    every token are too large to cache), and hidden_mse trains a projection that is attached
    to the student while it trains and detached before the student is saved.

    Training minimises the objective. Evaluation reports cross-entropy as `eval_loss`, as every
    other model's evaluation does, so that validation losses compare across stages; the
    objective on the validation split is `eval_distillation_loss`.
    """

    PROJECTION = "distillation_projection"

    def __init__(self, *args, alpha: float, temperature: float,
                 features: FeaturesConfig | None = None, teacher: PreTrainedModel | None = None,
                 layer_map: tuple[int, ...] = (), **kwargs) -> None:
        self.weights = objective_weights(alpha, temperature, features)
        self.temperature = temperature
        self.layer_map = tuple(layer_map)
        self.hidden = any(name in HIDDEN_TERMS for name in self.weights)
        if self.hidden and teacher is None:
            raise ValueError("a hidden-state term needs the teacher")
        model = kwargs.get("model", args[0] if args else None)
        self.projection = None
        if "hidden_mse" in self.weights:
            self.projection = torch.nn.Linear(model.config.hidden_size, teacher.config.hidden_size)
            # A submodule while training, so that the optimizer and the checkpoints have it.
            model.add_module(self.PROJECTION, self.projection)
        super().__init__(*args, **kwargs)
        self.teacher = teacher.to(self.args.device).eval() if self.hidden else None
        # (batch objective, batch size) while an evaluation runs; None while training.
        self._objective: list[tuple[float, int]] | None = None

    def train(self, *args, **kwargs):
        try:
            return super().train(*args, **kwargs)
        finally:
            if hasattr(self.model, self.PROJECTION):
                delattr(self.model, self.PROJECTION)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        teacher_logits = inputs.pop(TEACHER_LOGITS)
        labels = inputs.pop("labels")
        # Only when a term reads them: the built-in image models take no such argument.
        outputs = model(**inputs, **({"output_hidden_states": True} if self.hidden else {}))
        x = LossInputs(outputs.logits, teacher_logits, labels, self.temperature)
        if self.hidden:
            with torch.no_grad():
                x.teacher_hidden = self.teacher(**inputs, output_hidden_states=True).hidden_states
            x.student_hidden, x.attention_mask = outputs.hidden_states, inputs.get("attention_mask")
            x.layer_map = self.layer_map
            x.projection = self.projection
        objective_value = objective(x, self.weights)
        if self._objective is None:
            loss = objective_value
        else:
            loss = F.cross_entropy(outputs.logits.float(), labels)
            self._objective.append((objective_value.item(), len(labels)))
        if self.hidden:
            # The evaluation collects every output it is given: the logits only.
            outputs = type(outputs)(logits=outputs.logits)
        return (loss, outputs) if return_outputs else loss

    def evaluation_loop(self, *args, metric_key_prefix: str = "eval", **kwargs):
        self._objective = []
        try:
            output = super().evaluation_loop(*args, metric_key_prefix=metric_key_prefix, **kwargs)
        finally:
            objective_values, self._objective = self._objective, None
        # Under DDP each process saw its share of the rows: sum over every process.
        weighted, total = self.accelerator.reduce(torch.tensor(
            [sum(value * n for value, n in objective_values),
             sum(n for _, n in objective_values)], dtype=torch.float64, device=self.args.device),
            reduction="sum").tolist()
        output.metrics[f"{metric_key_prefix}_distillation_loss"] = weighted / total
        return output


def check_layer_map(student: PreTrainedModel, teacher: PreTrainedModel, student_processor,
                    teacher_processor, layer_map: list[int]) -> None:
    """Refuse, before training, a hidden-state term the two models cannot be compared by."""
    depth_s = student.config.num_hidden_layers
    depth_t = teacher.config.num_hidden_layers
    if len(layer_map) != depth_s or not all(0 <= j < depth_t for j in layer_map):
        raise UserError(
            f"features.layer_map {layer_map} must name one teacher layer (0..{depth_t - 1}) for "
            f"each of the student's {depth_s} layers"
        )
    if student_processor.get_vocab() != teacher_processor.get_vocab():
        raise UserError("features.loss compares hidden states token by token, and the student's "
                        "tokenizer is not the teacher's; use a student made from the teacher "
                        "(student.init: teacher_layers) or set features.loss: null")
