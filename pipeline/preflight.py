"""Params checked against the models they name, before any stage works: a model name that is
no model, an input length beyond a model's position limit. The schema (pipeline/config.py)
cannot see these; found at the first training step they would cost the stage's outputs."""

from __future__ import annotations

from transformers import AutoConfig, PretrainedConfig

from pipeline.config import Params
from pipeline.errors import UserError
from pipeline.models import BUILTIN_CONFIGS, resolve, starts_from_teacher
from pipeline.registry import TEXT_ALIASES


def _config(key: str, name: str, overrides: dict | None) -> PretrainedConfig:
    path = resolve(name)  # an alias, a local folder, or the Hub (a UserError if it cannot be)
    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as exc:
        cause = str(exc).strip().splitlines()[0]
        raise UserError(
            f"{key} '{name}' is not a model ({cause[:160]}); give a folder written by "
            f"save_pretrained (with its config.json), a Hub id, or {', '.join(TEXT_ALIASES)}."
        ) from None
    config.update(overrides or {})
    return config


def _named_models(params: Params) -> list[tuple[str, str, dict | None]]:
    """(params key, model name, config overrides) of every model params load by name."""
    models = [("teacher.model", params.teacher.model, params.teacher.config_overrides)]
    if params.student.model and not starts_from_teacher(params.student):
        models.append(("student.model", params.student.model, params.student.config_overrides))
    return [m for m in models if m[1] not in BUILTIN_CONFIGS]


def check_models(params: Params) -> None:
    """Every model params name loads as one, and takes data.max_length tokens."""
    for key, name, overrides in _named_models(params):
        config = _config(key, name, overrides)
        limit = getattr(config, "max_position_embeddings", None)
        if params.task == "text-classification" and limit and params.data.max_length > limit:
            raise UserError(
                f"data.max_length {params.data.max_length} is more than {key} '{name}' can "
                f"take: it has {limit} positions. Set data.max_length to {limit} or less."
            )
