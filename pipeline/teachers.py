"""Training one teacher: what the teacher stage does once and the ensemble stage once per seed."""

from __future__ import annotations

from pathlib import Path

from datasets import DatasetDict
from transformers import set_seed

from pipeline.config import Params
from pipeline.models import build_teacher, load_processor, model_source
from pipeline.tasks import get_task
from pipeline.training import fit_and_save


def train_teacher(
    stage: str, role: str, params: Params, ds: DatasetDict, names: list[str], seed: int,
    live: Path | None = None,
) -> None:
    """Build params' teacher from `seed`, fine-tune it (or check it, with teacher.finetune
    false) and write models/trained/<role> and reports/<role>.json."""
    set_seed(seed)
    task = get_task(params.task)
    model = build_teacher(params.teacher, names, task, ds["train"])
    processor = load_processor(params.teacher.model, task, ds["train"])
    fit_and_save(
        stage, role, params, model, processor, ds, params.teacher.train,
        model_source(params.teacher.model), fit=params.teacher.finetune,
        jitter=params.teacher.jitter, seed=seed, live=live,
    )
