"""params.yaml -> typed, validated objects. The only module that reads params."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipeline.errors import UserError

from pipeline.registry import IMAGE_BUILTINS, TEXT_ALIASES

DEFAULT_PARAMS = Path("params.yaml")
TASKS = ("text-classification", "image-classification")
SOURCE_PREFIXES = ("hub:", "sklearn:")


class _Section(BaseModel):
    # An unknown key is almost always a typo; silently ignoring it would train with a default.
    # No key has a default here: params.yaml holds every knob, where DVC sees it, and a missing
    # one is an error rather than a value nobody chose.
    model_config = ConfigDict(extra="forbid")


class TrainConfig(_Section):
    epochs: float = Field(gt=0)
    batch_size: int = Field(gt=0)
    learning_rate: float = Field(gt=0)
    weight_decay: float = Field(ge=0)
    warmup_ratio: float = Field(ge=0, lt=1)
    eval_batch_size: int = Field(gt=0)


class DataConfig(_Section):
    source: str
    # The file or folder DVC hashes to see that the data changed (dvc.yaml cannot tell a path
    # from hub:/sklearn: itself): data.source when it is local; for hub: and sklearn: sources
    # a file that stands for the data, such as the loading code.
    watch: str
    text_column: str
    image_column: str
    label_column: str
    max_length: int = Field(gt=0)
    validation_fraction: float = Field(gt=0, lt=1)
    test_fraction: float = Field(gt=0, lt=1)
    oos_label: str | None

    @model_validator(mode="after")
    def _check_watch(self) -> DataConfig:
        if self.source.startswith(SOURCE_PREFIXES):
            return self
        source, watch = Path(self.source), Path(self.watch)
        if watch != source and watch not in source.parents:
            raise ValueError(
                f"data.watch '{self.watch}' must be data.source '{self.source}' (or a folder "
                "holding it) when the source is local: DVC hashes data.watch to notice changed data"
            )
        return self


class TeacherConfig(_Section):
    model: str
    finetune: bool
    # Architecture overrides: when set, the teacher is built from the model's config with these
    # changes and random weights (tiny test models, ablations), not loaded pretrained.
    config_overrides: dict[str, Any] | None
    # Image tasks: each training image shifted by up to this many pixels along each axis, drawn
    # anew each epoch (pipeline/jitter.py); 0 for none. The students train on the unshifted
    # images the soft targets were computed on.
    jitter: int = Field(ge=0)
    train: TrainConfig

    @model_validator(mode="after")
    def _check_overrides_train(self) -> TeacherConfig:
        if self.jitter and not self.finetune:
            raise ValueError(f"teacher.jitter {self.jitter} shifts the images the teacher trains "
                             "on, and teacher.finetune false trains nothing; set teacher.jitter: 0")
        # A built-in image model is refused untrained by the check across sections.
        if self.config_overrides and not self.finetune and self.model not in IMAGE_BUILTINS:
            raise ValueError("teacher.config_overrides builds the teacher with random weights, "
                             "and teacher.finetune false would use it untrained; set "
                             "teacher.finetune: true or teacher.config_overrides: null")
        return self


class StudentConfig(_Section):
    init: Literal["teacher_layers", "pretrained", "config"]
    layers: list[int]
    # Which teacher the distilled student's layers come from when it is made from the teacher;
    # the baseline's always come from the teacher before fine-tuning (it owes the teacher nothing).
    from_teacher: Literal["finetuned", "pretrained"]
    model: str | None
    config_overrides: dict[str, Any] | None
    # Keep the word embeddings the student starts with (the teacher's or the pretrained
    # model's): they are most of a small text student's weights, and updating them is a large
    # share of each training step (bench/distill_throughput.py).
    freeze_word_embeddings: bool
    # The students' own seed (baseline and distilled alike): repeats of a setting vary it with
    # the data splits and the teacher held fixed (those follow the top-level seed).
    seed: int
    train: TrainConfig

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


class FeaturesConfig(_Section):
    # A hidden-state term beside the soft targets (pipeline/distill.py): null for none.
    loss: Literal["hidden_cosine", "hidden_mse"] | None
    weight: float = Field(ge=0)
    # Student layer k matches teacher layer layer_map[k]; [] for the teacher layers the student
    # was copied from (student.layers).
    layer_map: list[int]


class AugmentConfig(_Section):
    # Edited copies of each training row in the transfer set; 0: none.
    copies: int = Field(ge=0)
    # Text (pipeline/augment.py): the chance of each word edit.
    word_dropout: float = Field(ge=0, lt=1)
    mask: float = Field(ge=0, le=1)
    swap: float = Field(ge=0, le=1)
    # Images (pipeline/jitter.py): each copy shifted by up to this many pixels along each axis.
    shift: int = Field(ge=0)


# DVC hashes this folder for the soft_targets stage: unlabelled text must live in it.
TRANSFER_FOLDER = "data/transfer"


class SoftTargetsConfig(_Section):
    # Batch size of the teacher's pass over the data; it decides the padding of each batch, so
    # it belongs to the soft targets, not to the evaluation.
    batch_size: int = Field(gt=0)
    augment: AugmentConfig
    # A text file of unlabelled in-domain queries, one per line, under data/transfer/.
    unlabelled: str | None
    # The seeds of more teachers, trained as the teacher is (stage ensemble); the soft targets
    # are the mean of their logits and the teacher's.
    ensemble_seeds: list[int]

    @field_validator("ensemble_seeds")
    @classmethod
    def _check_distinct(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"soft_targets.ensemble_seeds {seeds} repeats a seed: a repeated "
                             "teacher is the same model trained twice")
        return seeds

    @model_validator(mode="after")
    def _check_unlabelled(self) -> SoftTargetsConfig:
        if self.unlabelled is None:
            return self
        path = Path(self.unlabelled)
        if Path(TRANSFER_FOLDER) not in path.parents or path.suffix != ".txt":
            raise ValueError(
                f"soft_targets.unlabelled '{self.unlabelled}' must be a .txt file (one query per "
                f"line) under {TRANSFER_FOLDER}/, the folder DVC watches for the soft_targets stage"
            )
        if not path.is_file():
            raise ValueError(f"soft_targets.unlabelled '{self.unlabelled}' does not exist")
        return self


class EvaluateConfig(_Section):
    batch_size: int = Field(gt=0)
    latency_runs: int = Field(gt=0)
    latency_warmup: int = Field(ge=0)
    latency_block: int = Field(gt=0)
    throughput_batch_size: int = Field(gt=0)
    ece_bins: int = Field(gt=0)


class ExportConfig(_Section):
    # The fp32 ONNX model's largest logit difference from PyTorch's, relative to the largest
    # logit, that still counts as the same model.
    logits_tolerance: float = Field(gt=0, lt=1)
    # The validation accuracy (a fraction: 0.005 = half a point) int8 may lose against fp32.
    int8_tolerance: float = Field(ge=0, le=1)
    # full, or training: the word embeddings keep only the tokens of the training split.
    vocabulary: Literal["full", "training"]
    # How the int8 file stores its embedding tables: int8, or int4 by blocks of a row.
    embeddings: Literal["int8", "int4"]
    # int4: values of a row sharing one scale; ONNX Runtime takes a power of two from 16.
    embeddings_block_size: int = Field(ge=16)

    @field_validator("embeddings_block_size")
    @classmethod
    def _power_of_two(cls, value: int) -> int:
        if value & (value - 1):
            raise ValueError(f"must be a power of two (16, 32, 64, ...), got {value}")
        return value


class DistributedConfig(_Section):
    # Processes per machine for the training stages (one per GPU; on a CPU, gloo processes that
    # share its cores). The global batch is train.batch_size x nproc_per_node x nnodes.
    nproc_per_node: int = Field(gt=0)
    # Machines; each runs the same command, with the rendezvous from torchrun's PET_*
    # environment (README: several machines).
    nnodes: int = Field(gt=0)


class TrackingConfig(_Section):
    mlflow_uri: str
    experiment: str


class CardConfig(_Section):
    model_name: str
    license: str
    # null for data without a language (images).
    language: str | None
    dataset_name: str
    dataset_id: str | None
    dataset_citation: str | None
    # Where the project's code is published (a git URL), for the card's "how to reproduce".
    repository: str | None
    # The Hub repository the student is published under ("user/name"; the teacher's gets
    # "-teacher"), for the card's usage snippet.
    repo_id: str | None


class Params(_Section):
    seed: int
    alpha: float = Field(ge=0, le=1)
    temperature: float = Field(gt=0)
    task: Literal[TASKS]
    data: DataConfig
    teacher: TeacherConfig
    student: StudentConfig
    features: FeaturesConfig
    soft_targets: SoftTargetsConfig
    evaluate: EvaluateConfig
    export: ExportConfig
    distributed: DistributedConfig
    tracking: TrackingConfig
    card: CardConfig

    def layer_map(self) -> list[int]:
        """The teacher layer each student layer matches in a hidden-state term."""
        return self.features.layer_map or self.student.layers

    @model_validator(mode="after")
    def _check_ensemble_seeds(self) -> Params:
        if self.seed in self.soft_targets.ensemble_seeds:
            raise ValueError(f"soft_targets.ensemble_seeds has the top-level seed {self.seed}, "
                             "the teacher's own: that member would be the teacher again")
        if self.soft_targets.ensemble_seeds and not self.teacher.finetune:
            raise ValueError("soft_targets.ensemble_seeds needs teacher.finetune: true (the "
                             "ensemble's teachers are fine-tuned as the teacher is)")
        return self

    def seed_of(self, role: str) -> int:
        """The training seed of a role: the teacher's is the top-level seed, the students'
        student.seed."""
        return self.seed if role == "teacher" else self.student.seed

    @model_validator(mode="after")
    def _check_models_fit_task(self) -> Params:
        image = self.task == "image-classification"
        for role, model in (("teacher", self.teacher.model), ("student", self.student.model)):
            if not image and model in IMAGE_BUILTINS:
                raise ValueError(f"{role}.model '{model}' is an image model; set task: "
                                 "image-classification or pick a text model")
            if image and model in TEXT_ALIASES:
                raise ValueError(f"{role}.model '{model}' is a text model; task is "
                                 "image-classification (built-in image models: cnn, mlp)")
        if self.teacher.model in IMAGE_BUILTINS:
            if not self.teacher.finetune:
                raise ValueError(f"teacher.model '{self.teacher.model}' is built here with random "
                                 "weights, so teacher.finetune must be true")
            if self.student.init == "teacher_layers":
                raise ValueError(f"student.init teacher_layers copies transformer layers, and a "
                                 f"'{self.teacher.model}' teacher has none; use student.init: "
                                 "config with student.model: mlp")
        if self.features.loss and image:
            raise ValueError(f"features.loss {self.features.loss} matches transformer hidden "
                             "states; set it to null for task image-classification")
        if (self.features.loss and not self.features.layer_map
                and self.student.init != "teacher_layers"):
            raise ValueError("features.layer_map [] means the layers the student was copied from, "
                             "and student.init is not teacher_layers: list a teacher layer for "
                             "each student layer")
        if (self.features.layer_map and self.student.init == "teacher_layers"
                and len(self.features.layer_map) != len(self.student.layers)):
            raise ValueError(f"features.layer_map {self.features.layer_map} must name one teacher "
                             f"layer for each of the student's {len(self.student.layers)} layers "
                             f"(student.layers {self.student.layers})")
        if image and self.soft_targets.unlabelled:
            raise ValueError("soft_targets.unlabelled is a file of text queries; set it to null "
                             "for task image-classification")
        if image and self.soft_targets.augment.copies and not self.soft_targets.augment.shift:
            raise ValueError("soft_targets.augment.copies of images are shifted copies, and "
                             "soft_targets.augment.shift 0 would copy them unchanged; set "
                             "soft_targets.augment.shift (pixels, such as 2)")
        if not image and self.teacher.jitter:
            raise ValueError(f"teacher.jitter {self.teacher.jitter} shifts training images; set "
                             "it to 0 for task text-classification")
        if image and self.student.freeze_word_embeddings:
            raise ValueError("student.freeze_word_embeddings applies to text models; set it to "
                             "false for task image-classification")
        if self.student.init == "pretrained" and self.student.model in IMAGE_BUILTINS:
            raise ValueError(f"student.model '{self.student.model}' has no pretrained weights; "
                             "use student.init: config")
        if image and self.export.vocabulary != "full":
            raise ValueError("export.vocabulary training prunes a text model's word embeddings; "
                             "set it to full for task image-classification")
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
        raise UserError("params.yaml is invalid: " + " ".join(lines)) from None


def load_params(path: str | Path = DEFAULT_PARAMS) -> Params:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} not found: run from the project root, where params.yaml lives.")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"{path}{where}: not valid YAML ({problem}); fix the syntax "
                        "there.") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path} must hold a mapping of keys, not {type(raw).__name__}.")
    return parse_params(raw)
