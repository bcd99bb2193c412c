"""Teacher logits computed once per row, stored with the row id, joined back for distillation."""

from __future__ import annotations

import numpy as np
from datasets import Dataset, DatasetDict
from transformers import PreTrainedModel

from pipeline.inference import predict_logits
from pipeline.tasks import ImageTask, Processor, TextTask

SPLITS = ("train", "validation")
# The column of cached teacher logits, in data/soft_targets and in the distill stage's batches.
TEACHER_LOGITS = "teacher_logits"


def compute(
    teacher: PreTrainedModel,
    processor: Processor,
    task: TextTask | ImageTask,
    ds: DatasetDict,
    batch_size: int,
    max_length: int,
) -> DatasetDict:
    """Columns idx and teacher_logits for the train and validation splits."""
    out = {}
    for split in SPLITS:
        logits = predict_logits(
            teacher, processor, task, ds[split][task.column], batch_size, max_length,
            desc=f"teacher {split}",
        )
        out[split] = Dataset.from_dict({"idx": ds[split]["idx"], TEACHER_LOGITS: logits.tolist()})
    return DatasetDict(out)


def attach(ds: Dataset, soft: Dataset) -> Dataset:
    """`ds` with a teacher_logits column, matched on idx (not on row order)."""
    position = {idx: i for i, idx in enumerate(soft["idx"])}
    missing = [i for i in ds["idx"] if i not in position]
    if missing:
        raise ValueError(
            f"{len(missing)} rows have no teacher logits (first idx {missing[0]}): "
            "data/soft_targets is out of date; run `dvc repro` to rebuild it."
        )
    logits = np.asarray(soft[TEACHER_LOGITS], dtype=np.float32)
    return ds.add_column(TEACHER_LOGITS, logits[[position[i] for i in ds["idx"]]].tolist())
