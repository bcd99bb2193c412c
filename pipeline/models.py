"""Teacher and student builders: Hub id, local path, packaged alias, built-in image model, or
teacher layers; and the processor (tokenizer or image processor) that goes with each."""

from __future__ import annotations

import importlib
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset
from huggingface_hub import snapshot_download
from huggingface_hub.errors import HfHubHTTPError
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoProcessor,
    AutoTokenizer,
    PreTrainedModel,
)

from pipeline import paths, vision_models
from pipeline.config import Params, StudentConfig, TeacherConfig
from pipeline.errors import UserError
from pipeline.inputs import reading
from pipeline.registry import IMAGE_BUILTINS, ROLES, TEXT_ALIASES
from pipeline.tasks import TASKS, ImageTask, Processor, TextTask, image_shape

TEXT = TASKS["text-classification"]
# Built-in image models by name (params teacher.model / student.model): random weights, their
# architecture from config_overrides, their input shape from the data.
BUILTIN_CONFIGS = {name: getattr(vision_models, cls) for name, cls in IMAGE_BUILTINS.items()}

log = logging.getLogger(__name__)

# Layer blocks of transformer encoders (BERT, RoBERTa, MiniLM: encoder.layer.N; DistilBERT:
# transformer.layer.N; ViT: vit.layers.N). Keys outside them (embeddings, pooler, classifier)
# are copied as they are.
_LAYER_KEY = re.compile(r"^(.*?(?:encoder\.layer|transformer\.layer|vit\.layers)\.)(\d+)(\..*)$")


def packaged_path(alias: str) -> Path:
    """The folder of a packaged text model (registry.TEXT_ALIASES)."""
    return Path(importlib.import_module(TEXT_ALIASES[alias].package).get_model_path())


@dataclass(frozen=True)
class ModelSource:
    """Where a model name's files are, and which Hub commit they are (None: not from the Hub)."""

    path: str
    hub_id: str | None = None
    revision: str | None = None

    def record(self) -> dict:
        """What a report keeps so that the run can fetch the same files again."""
        return {"hub_id": self.hub_id, "revision": self.revision}


# The files a model folder needs; a Hub repository may also hold other frameworks' weights.
_MODEL_FILES = ["*.json", "*.safetensors", "*.txt", "*.model"]


def locate(name: str) -> ModelSource:
    """A model name -> its files: an alias's packaged folder, a local folder, or a Hub id
    (`ID` or `ID@REVISION`) downloaded at that revision, its commit recorded."""
    if name in TEXT_ALIASES:
        alias = TEXT_ALIASES[name]
        return ModelSource(str(packaged_path(name)), alias.hub_id, alias.revision)
    if Path(name).exists():
        return ModelSource(name)
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}:
        raise UserError(
            f"model '{name}' is neither an alias ({', '.join(TEXT_ALIASES)}) nor a local folder, and "
            "HF_HUB_OFFLINE is set so it cannot come from the Hub. Use a local path or an alias."
        )
    repo_id, _, revision = name.partition("@")
    try:
        folder = snapshot_download(repo_id, revision=revision or None, allow_patterns=_MODEL_FILES)
    except (HfHubHTTPError, OSError, ValueError) as exc:
        raise UserError(f"could not fetch model '{name}' from the Hugging Face Hub ({exc}); check "
                        "the id and revision (ID or ID@REVISION) and the network.") from None
    # snapshot_download returns .../snapshots/<commit>: the exact files, whatever the branch.
    return ModelSource(folder, repo_id, Path(folder).name)


def resolve(name: str) -> str:
    """The local folder of a model name (see `locate`)."""
    return locate(name).path


def model_source(name: str | None) -> dict:
    """Where a model's starting weights came from, for the reports: a Hub id and commit, or
    nulls for a local folder, a built-in model or none."""
    if name is None or name in BUILTIN_CONFIGS:
        return ModelSource("").record()
    return locate(name).record()


def student_source(params: Params) -> dict:
    """Where the student's starting weights came from: the teacher's base model when its layers
    come from the teacher, else student.model."""
    s = params.student
    return model_source(params.teacher.model if starts_from_teacher(s) else s.model)


def load_tokenizer(name: str) -> Processor:
    return AutoTokenizer.from_pretrained(resolve(name))


def builtin_processor(train: Dataset) -> vision_models.PixelImageProcessor:
    """Rescale to [0, 1] and standardise with the training images' per-channel mean and std."""
    first = train[0]["image"]
    pixels = np.stack([np.asarray(im, dtype=np.float32) / 255 for im in train["image"]])
    axes = tuple(range(pixels.ndim - 1)) if pixels.ndim == 4 else None
    mean, std = pixels.mean(axis=axes), pixels.std(axis=axes)
    return vision_models.PixelImageProcessor(
        image_mode=first.mode, do_resize=True, size={"height": first.height, "width": first.width},
        do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
        image_mean=np.atleast_1d(mean).round(4).tolist(),
        image_std=np.atleast_1d(np.maximum(std, 1e-3)).round(4).tolist(),
    )


def load_processor(name: str, task: TextTask | ImageTask, train: Dataset | None = None) -> Processor:
    """The tokenizer or image processor of model `name`; a built-in image model's is made from
    the training images."""
    if isinstance(task, ImageTask):
        if name in BUILTIN_CONFIGS:
            if train is None:
                raise ValueError("a built-in image model's processor needs the training images")
            return builtin_processor(train)
        return AutoImageProcessor.from_pretrained(resolve(name))
    return load_tokenizer(name)


def load_saved_processor(folder: str | Path) -> Processor:
    """The processor saved beside a trained model (tokenizer or image processor)."""
    return AutoProcessor.from_pretrained(str(folder))


def _label_maps(names: list[str]) -> dict:
    return {
        "num_labels": len(names),
        "id2label": dict(enumerate(names)),
        "label2id": {n: i for i, n in enumerate(names)},
    }


def load_classifier(path: str | Path, task: TextTask | ImageTask = TEXT) -> PreTrainedModel:
    # Safetensors only: a pickled checkpoint can run code when loaded.
    return task.auto_model.from_pretrained(str(path), use_safetensors=True)


def _builtin(
    name: str, overrides: dict | None, names: list[str], train: Dataset | None
) -> PreTrainedModel:
    if train is None:
        raise ValueError(f"built-in model '{name}' takes its input shape from the training images")
    config_class = BUILTIN_CONFIGS[name]
    # A config takes any keyword silently; a typo would train the default architecture.
    unknown = sorted(set(overrides or {}) - set(config_class.architecture_keys))
    if unknown:
        raise UserError(
            f"config_overrides of the built-in '{name}' model has unknown keys {unknown}; it "
            f"takes {', '.join(config_class.architecture_keys)}."
        )
    config = config_class(**(overrides or {}), **image_shape(train[0]["image"]),
                          **_label_maps(names))
    return TASKS["image-classification"].auto_model.from_config(config)


def build_teacher(
    cfg: TeacherConfig, names: list[str], task: TextTask | ImageTask = TEXT,
    train: Dataset | None = None,
) -> PreTrainedModel:
    """The teacher, ready to fine-tune (or, with finetune false, already fine-tuned).
    `train` (the training split) gives a built-in image model its input shape."""
    if cfg.model in BUILTIN_CONFIGS:
        return _builtin(cfg.model, cfg.config_overrides, names, train)
    path = resolve(cfg.model)
    if cfg.config_overrides:
        config = AutoConfig.from_pretrained(path, **cfg.config_overrides, **_label_maps(names))
        return task.auto_model.from_config(config)
    if not cfg.finetune:
        model = load_classifier(path, task)
        have = [model.config.id2label[i] for i in range(model.config.num_labels)]
        if sorted(have) != sorted(names):
            missing, extra = sorted(set(names) - set(have)), sorted(set(have) - set(names))
            raise UserError(
                f"teacher '{cfg.model}' was fine-tuned on other labels than the data has "
                f"(missing from the model: {missing[:10]}; not in the data: {extra[:10]}). "
                "Use teacher.finetune: true or a checkpoint trained on this label set."
            )
        return reorder_labels(model, names)
    return _pretrained(path, names, task)


def _pretrained(path: str, names: list[str], task: TextTask | ImageTask) -> PreTrainedModel:
    # Image models on the Hub mostly come with an ImageNet head; it is replaced by a new one.
    return task.auto_model.from_pretrained(
        path, use_safetensors=True, ignore_mismatched_sizes=isinstance(task, ImageTask),
        **_label_maps(names),
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


def student_from_teacher(
    teacher: PreTrainedModel, layers: list[int], task: TextTask | ImageTask = TEXT
) -> PreTrainedModel:
    """A shallower copy of the teacher that keeps `layers` (DistilBERT's initialisation).

    Embeddings, pooler and classifier are copied; teacher layer layers[k] becomes layer k.
    """
    depth = getattr(teacher.config, "num_hidden_layers", None)
    if depth is None:
        raise UserError(
            f"student.init teacher_layers copies transformer layers, and the teacher "
            f"({teacher.config.model_type}) has none; use student.init: config (e.g. with "
            "student.model: mlp)."
        )
    bad = [i for i in layers if not 0 <= i < depth]
    if bad:
        raise UserError(
            f"student.layers {layers} names layers {bad} that the teacher does not have "
            f"(it has layers 0..{depth - 1})."
        )
    config = teacher.config.__class__.from_dict(teacher.config.to_dict())
    config.num_hidden_layers = len(layers)
    student = task.auto_model.from_config(config)
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
    cfg: StudentConfig, names: list[str], teacher: PreTrainedModel | None,
    task: TextTask | ImageTask = TEXT, train: Dataset | None = None,
) -> PreTrainedModel:
    """The student as `cfg` describes it, its word embeddings frozen when it says so."""
    student = _new_student(cfg, names, teacher, task, train)
    if cfg.freeze_word_embeddings:
        # The Trainer's optimizer leaves out what needs no gradient; save_pretrained keeps it.
        student.get_input_embeddings().weight.requires_grad_(False)
    return student


def _new_student(
    cfg: StudentConfig, names: list[str], teacher: PreTrainedModel | None,
    task: TextTask | ImageTask, train: Dataset | None,
) -> PreTrainedModel:
    if cfg.init == "teacher_layers":
        if teacher is None:
            raise ValueError("student.init teacher_layers needs the teacher model")
        return student_from_teacher(teacher, cfg.layers, task)
    if cfg.init == "pretrained":
        return _pretrained(resolve(cfg.model), names, task)
    if cfg.model in BUILTIN_CONFIGS:
        return _builtin(cfg.model, cfg.config_overrides, names, train)
    base = resolve(cfg.model) if cfg.model else None
    if base is None and teacher is not None:
        config = teacher.config.__class__.from_dict(teacher.config.to_dict())
        config.update(cfg.config_overrides or {})
    elif base is None:
        raise UserError("student.init 'config' needs student.model or a teacher to take a config from.")
    else:
        config = AutoConfig.from_pretrained(base, **(cfg.config_overrides or {}))
    config.update(_label_maps(names))
    return task.auto_model.from_config(config)


def starts_from_teacher(cfg: StudentConfig) -> bool:
    """Whether the student is made from a teacher: its layers, or its config."""
    return cfg.init == "teacher_layers" or (cfg.init == "config" and not cfg.model)


def pretrained_teacher(
    params: Params, names: list[str], task: TextTask | ImageTask, train: Dataset | None
) -> tuple[PreTrainedModel, Processor]:
    """The teacher as it is before fine-tuning (teacher.model with a fresh head) and its
    processor: what the baseline student starts from, so that it owes the teacher nothing."""
    return (build_teacher(params.teacher, names, task, train),
            load_processor(params.teacher.model, task, train))


def load_trained(role: str, task: TextTask | ImageTask) -> tuple[PreTrainedModel, Processor]:
    """A trained model (models/trained/<role>) and its processor; a missing or damaged folder is
    one line that names the stage that rebuilds it."""
    with reading(paths.trained(role), ROLES[role].stage) as folder:
        return load_classifier(folder, task), load_saved_processor(folder)


def load_student(
    cfg: StudentConfig, names: list[str],
    teacher: Callable[[], tuple[PreTrainedModel, Processor]],
    task: TextTask | ImageTask = TEXT, train: Dataset | None = None,
) -> tuple[PreTrainedModel, Processor]:
    """The student and its processor. `teacher` gives the teacher and its processor; it is
    called only when the student is made from the teacher."""
    if starts_from_teacher(cfg):
        teacher_model, processor = teacher()
        return build_student(cfg, names, teacher_model, task, train), processor
    return build_student(cfg, names, None, task, train), load_processor(cfg.model, task, train)


def count_parameters(model: PreTrainedModel) -> int:
    return sum(p.numel() for p in model.parameters())
