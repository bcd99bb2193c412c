"""params.yaml -> typed, validated objects. The only module that reads params."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pipeline.errors import UserError

DEFAULT_PARAMS = Path("params.yaml")
TASKS = ("text-classification", "image-classification")
# Image models the project builds itself (teacher.model / student.model), by architecture.
VISION_BUILTINS = ("cnn", "mlp")
# Text models the project ships offline (teacher.model / student.model aliases).
TEXT_ALIASES = ("minilm-l6",)
SOURCE_PREFIXES = ("hub:", "sklearn:")


class _Section(BaseModel):
    # An unknown key is almost always a typo; silently ignoring it would train with a default.
    model_config = ConfigDict(extra="forbid")


class TrainConfig(_Section):
    epochs: float = Field(3, gt=0)
    batch_size: int = Field(32, gt=0)
    learning_rate: float = Field(5e-5, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    eval_batch_size: int = Field(128, gt=0)


class DataConfig(_Section):
    source: str
    # The file or folder DVC hashes to see that the data changed (dvc.yaml cannot tell a path
    # from hub:/sklearn: itself): data.source when it is local; for hub: and sklearn: sources
    # a file that stands for the data, such as the loading code.
    watch: str | None = None
    text_column: str = "text"
    image_column: str = "image"
    label_column: str = "label"
    max_length: int = Field(64, gt=0)
    validation_fraction: float = Field(0.1, gt=0, lt=1)
    test_fraction: float = Field(0.2, gt=0, lt=1)
    oos_label: str | None = "oos"

    @model_validator(mode="after")
    def _check_watch(self) -> DataConfig:
        if self.source.startswith(SOURCE_PREFIXES) or self.watch is None:
            return self
        source, watch = Path(self.source), Path(self.watch)
        if watch != source and watch not in source.parents:
            raise ValueError(
                f"data.watch '{self.watch}' must be data.source '{self.source}' (or a folder "
                "holding it) when the source is local: DVC hashes data.watch to notice changed data"
            )
        return self


class TeacherConfig(_Section):
    model: str = "minilm-l6"
    finetune: bool = True
    # Architecture overrides: when set, the teacher is built from the model's config with these
    # changes and random weights (tiny test models, ablations), not loaded pretrained.
    config_overrides: dict[str, Any] | None = None
    train: TrainConfig = TrainConfig()


class StudentConfig(_Section):
    init: Literal["teacher_layers", "pretrained", "config"] = "teacher_layers"
    layers: list[int] = Field(default_factory=lambda: [0, 2, 4])
    model: str | None = None
    config_overrides: dict[str, Any] | None = None
    # Keep the word embeddings the student starts with (the teacher's or the pretrained
    # model's): they are most of a small text student's weights, and updating them is a large
    # share of each training step (bench/distill_throughput.py).
    freeze_word_embeddings: bool = False
    train: TrainConfig = TrainConfig()

    @model_validator(mode="after")
    def _check_init(self) -> StudentConfig:
        if self.freeze_word_embeddings and self.init == "config":
            raise ValueError("student.freeze_word_embeddings would freeze random word embeddings "
                             "(student.init: config); use it with teacher_layers or pretrained")
        if self.init == "teacher_layers" and not self.layers:
            raise ValueError("student.layers must list at least one teacher layer")
        if self.init == "pretrained" and not self.model:
            raise ValueError("student.init 'pretrained' needs student.model (a Hub id, path or alias)")
        if self.init == "teacher_layers" and len(set(self.layers)) != len(self.layers):
            raise ValueError(f"student.layers has repeated layers: {self.layers}")
        return self


class EvaluateConfig(_Section):
    batch_size: int = Field(128, gt=0)
    latency_runs: int = Field(50, gt=0)
    latency_warmup: int = Field(5, ge=0)
    throughput_batch_size: int = Field(64, gt=0)
    ece_bins: int = Field(15, gt=0)


class TrackingConfig(_Section):
    mlflow_uri: str = "sqlite:///mlflow.db"
    experiment: str = "distill-pipeline"


class CardConfig(_Section):
    model_name: str = "distilled-intent-classifier"
    license: str = "apache-2.0"
    # null for data without a language (images).
    language: str | None = "en"
    dataset_name: str = "demo intents"
    dataset_id: str | None = None
    dataset_citation: str | None = None


class Params(_Section):
    seed: int = 42
    alpha: float = Field(0.5, ge=0, le=1)
    temperature: float = Field(2.0, gt=0)
    task: Literal[TASKS] = "text-classification"
    data: DataConfig
    teacher: TeacherConfig = TeacherConfig()
    student: StudentConfig = StudentConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    tracking: TrackingConfig = TrackingConfig()
    card: CardConfig = CardConfig()

    @model_validator(mode="after")
    def _check_models_fit_task(self) -> Params:
        image = self.task == "image-classification"
        for role, model in (("teacher", self.teacher.model), ("student", self.student.model)):
            if not image and model in VISION_BUILTINS:
                raise ValueError(f"{role}.model '{model}' is an image model; set task: "
                                 "image-classification or pick a text model")
            if image and model in TEXT_ALIASES:
                raise ValueError(f"{role}.model '{model}' is a text model; task is "
                                 "image-classification (built-in image models: cnn, mlp)")
        if self.teacher.model in VISION_BUILTINS:
            if not self.teacher.finetune:
                raise ValueError(f"teacher.model '{self.teacher.model}' is built here with random "
                                 "weights, so teacher.finetune must be true")
            if self.student.init == "teacher_layers":
                raise ValueError(f"student.init teacher_layers copies transformer layers, and a "
                                 f"'{self.teacher.model}' teacher has none; use student.init: "
                                 "config with student.model: mlp")
        if image and self.student.freeze_word_embeddings:
            raise ValueError("student.freeze_word_embeddings applies to text models; set it to "
                             "false for task image-classification")
        if self.student.init == "pretrained" and self.student.model in VISION_BUILTINS:
            raise ValueError(f"student.model '{self.student.model}' has no pretrained weights; "
                             "use student.init: config")
        return self


def _allowed_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        annotation = field.annotation if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


def _describe(error: dict, raw: dict) -> str:
    loc = tuple(error["loc"])
    key = ".".join(str(p) for p in loc) or "(top level)"
    if error["type"] == "value_error" and not loc:
        # A check across sections: its message names the keys itself.
        return error["msg"].removeprefix("Value error, ") + "."
    if error["type"] == "extra_forbidden":
        allowed = _allowed_keys(Params, loc)
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f" Did you mean '{'.'.join([*map(str, loc[:-1]), close[0]])}'?" if close else ""
        return f"unknown key '{key}'.{hint} Allowed here: {', '.join(allowed)}."
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "value_error" and isinstance(error.get("input"), dict):
        # A check within a section: its message names the keys, the section's dump would not help.
        return f"{message}."
    if error["type"] == "missing":
        return f"'{key}' is required but missing."
    return f"'{key}' = {error.get('input')!r}: {message}."


def parse_params(raw: dict) -> Params:
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        lines = [_describe(e, raw) for e in exc.errors()]
        raise UserError("params.yaml is invalid:\n  " + "\n  ".join(lines)) from None


def load_params(path: str | Path = DEFAULT_PARAMS) -> Params:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} not found: run from the project root, where params.yaml lives.")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise UserError(f"{path} must hold a mapping of keys, not {type(raw).__name__}.")
    return parse_params(raw)
