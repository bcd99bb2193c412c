"""Teacher logits computed once per row, stored with the row id, joined back for distillation;
and the transfer set: rows without a label that only the teacher's logits describe."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict, Features, concatenate_datasets
from transformers import PreTrainedModel

from pipeline import paths, prepared
from pipeline.errors import UserError
from pipeline.inference import predict_logits
from pipeline.inputs import reading
from pipeline.outputs import write_json
from pipeline.registry import ROLES
from pipeline.tasks import ImageTask, Processor, TextTask

SPLITS = ("train", "validation")
# The unlabelled rows the teacher labels beside the training split (data/soft_targets/transfer).
TRANSFER = "transfer"
# The column of cached teacher logits, in data/soft_targets and in the distill stage's batches.
TEACHER_LOGITS = "teacher_logits"
# The label of a transfer row: the hard-label loss skips it (PyTorch's cross-entropy default).
NO_LABEL = -100
# The stage that writes data/soft_targets, and the file in it that says what it was computed
# from: rows are joined on idx, which other prepared data has too, so logits of other data or
# of another teacher would be used without a word.
STAGE = "soft_targets"
STAMP = "computed_from.json"


def _weights_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for weights in sorted(folder.glob("*.safetensors")):
        with weights.open("rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()[:16]


def provenance(ds: DatasetDict, names: list[str]) -> dict[str, str]:
    """What soft targets are computed from: the prepared data and the trained teacher's weights."""
    with reading(paths.trained("teacher"), ROLES["teacher"].stage) as teacher:
        return {"prepared data": prepared.digest(ds, names), "teacher": _weights_digest(teacher)}


def save(soft: DatasetDict, folder: Path, made_from: dict[str, str]) -> None:
    soft.save_to_disk(str(folder))
    write_json(folder / STAMP, made_from)


def load(folder: str | Path, made_from: dict[str, str]) -> DatasetDict:
    """data/soft_targets, refused unless it was computed from `made_from` (provenance's answer
    for the data and teacher the stage has now)."""
    with reading(folder, STAGE) as folder:
        soft = datasets.load_from_disk(str(folder))
        stamp = json.loads((folder / STAMP).read_text())
    other = [what for what, value in made_from.items() if stamp.get(what) != value]
    if other:
        raise UserError(f"{folder} was computed from another {' and '.join(other)} than the "
                        f"workspace has now; rebuild it with `dvc repro {STAGE}`.")
    return soft


Teachers = Sequence[tuple[PreTrainedModel, Processor]]


def mean_logits(
    teachers: Teachers, task: TextTask | ImageTask, inputs: list[Any], batch_size: int,
    max_length: int, desc: str,
) -> np.ndarray:
    """The mean of the teachers' logits for `inputs` (one teacher: its logits)."""
    each = [predict_logits(model, processor, task, inputs, batch_size, max_length,
                           desc=desc if len(teachers) == 1 else f"{desc} ({i + 1}/{len(teachers)})")
            for i, (model, processor) in enumerate(teachers)]
    return np.mean(each, axis=0, dtype=np.float64).astype(np.float32)


def compute(
    teachers: Teachers,
    task: TextTask | ImageTask,
    ds: DatasetDict,
    batch_size: int,
    max_length: int,
) -> DatasetDict:
    """Columns idx and teacher_logits (the teachers' mean) for the train and validation splits."""
    out = {}
    for split in SPLITS:
        logits = mean_logits(teachers, task, ds[split][task.column], batch_size, max_length,
                             desc=f"teacher {split}")
        out[split] = Dataset.from_dict({"idx": ds[split]["idx"], TEACHER_LOGITS: logits.tolist()})
    return DatasetDict(out)


def transfer_set(
    teachers: Teachers,
    task: TextTask | ImageTask,
    inputs: list[Any],
    batch_size: int,
    max_length: int,
) -> Dataset:
    """Columns text (or image) and teacher_logits (the teachers' mean) for the transfer set's
    `inputs`."""
    logits = mean_logits(teachers, task, inputs, batch_size, max_length, desc=f"teacher {TRANSFER}")
    return Dataset.from_dict({task.column: inputs, TEACHER_LOGITS: logits.tolist()})


def with_transfer(train: Dataset, transfer: Dataset) -> Dataset:
    """The training split (with its teacher logits) followed by the transfer rows, which have
    no label (NO_LABEL) and ids that no prepared row has (-1, -2, ...)."""
    n = len(transfer)
    rows = transfer.add_column("idx", list(range(-1, -n - 1, -1)))
    rows = rows.add_column("label", [NO_LABEL] * n)
    # The prepared label column is a ClassLabel, which cannot hold NO_LABEL: plain integers.
    # keep_in_memory: a cast written to datasets' cache would land beside the source's files,
    # inside data/prepared and data/soft_targets, DVC outputs of earlier stages.
    if isinstance(train.features["label"], ClassLabel):
        train = train.cast(Features({**train.features, "label": rows.features["label"]}),
                           keep_in_memory=True)
    return concatenate_datasets([train, rows.cast(train.features, keep_in_memory=True)])


def attach(ds: Dataset, soft: Dataset) -> Dataset:
    """`ds` with a teacher_logits column, matched on idx (not on row order)."""
    position = {idx: i for i, idx in enumerate(soft["idx"])}
    missing = [i for i in ds["idx"] if i not in position]
    if missing:
        raise UserError(
            f"{len(missing)} rows have no teacher logits (first idx {missing[0]}): "
            f"data/soft_targets is out of date; rebuild it with `dvc repro {STAGE}`."
        )
    logits = np.asarray(soft[TEACHER_LOGITS], dtype=np.float32)
    return ds.add_column(TEACHER_LOGITS, logits[[position[i] for i in ds["idx"]]].tolist())
