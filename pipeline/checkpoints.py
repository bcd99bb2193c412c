"""Per-epoch Trainer checkpoints of a training stage, so that a killed stage resumes.

A stage's checkpoints live in models/checkpoints/<stage> beside a fingerprint of everything the
training depends on: params, the code the stage runs, the starting weights and the encoded
training data. A rerun resumes only from a checkpoint with the same fingerprint; anything else
there is stale and is cleared.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import torch
from datasets import Dataset
from transformers import PreTrainedModel
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from pipeline.code_deps import code_digest
from pipeline.config import Params

log = logging.getLogger(__name__)

STAMP = "fingerprint.txt"
# Params that do not change what training produces. `distributed` changes it through the
# global batch only, which the fingerprint holds itself: the same global batch over other
# machines resumes.
NOT_TRAINING = {"evaluate", "tracking", "card", "distributed"}


def fingerprint(stage: str, params: Params, global_batch: int, model: PreTrainedModel,
                *splits: Dataset) -> str:
    """What training of `stage` depends on: params, the global batch size (per device x
    processes), the stage's code (stages/<stage>.py and the modules it imports), `model`'s
    starting weights and the encoded `splits`."""
    digest = hashlib.sha256(stage.encode())
    digest.update(json.dumps(params.model_dump(mode="json", exclude=NOT_TRAINING),
                             sort_keys=True).encode())
    digest.update(f"global_batch={global_batch}".encode())
    digest.update(code_digest(f"stages/{stage}.py").encode())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    for split in splits:
        for batch in split.with_format("arrow")[:].to_batches():
            digest.update(batch.serialize())
    return digest.hexdigest()


def _complete(folder: Path) -> bool:
    return (folder / "trainer_state.json").is_file()


def find(folder: Path, stamp: str) -> Path | None:
    """The newest complete checkpoint in `folder` made with the same fingerprint, else None.
    Reads only: what every process of a multi-process run does once rank 0 ran `latest`."""
    stamp_file = folder / STAMP
    if not (stamp_file.is_file() and stamp_file.read_text() == stamp):
        return None
    found = sorted(
        (p for p in folder.glob(f"{PREFIX_CHECKPOINT_DIR}-*") if _complete(p)),
        key=lambda p: int(p.name.rsplit("-", 1)[1]),
    )
    return found[-1] if found else None


def latest(folder: Path, stamp: str) -> Path | None:
    """`find`; without a checkpoint, `folder` is emptied and stamped for this run's checkpoints.
    Only rank 0 calls it: it deletes."""
    if (found := find(folder, stamp)) is not None:
        return found
    stamp_file = folder / STAMP
    if folder.exists() and not (stamp_file.is_file() and stamp_file.read_text() == stamp):
        log.info("clearing %s: its checkpoints come from other params, code, starting weights "
                 "or data", folder)
    clear(folder)
    folder.mkdir(parents=True)
    stamp_file.write_text(stamp)
    return None


def clear(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
