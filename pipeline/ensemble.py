"""More teachers, one per seed (soft_targets.ensemble_seeds), trained as the teacher is: the
soft targets are the mean of their logits and the teacher's. The published teacher stays the
first; the others live in models/trained/ensemble/seed-<seed>, listed in members.json, with
their reports in reports/ensemble."""

from __future__ import annotations

import json
from pathlib import Path

from transformers import PreTrainedModel

from pipeline import paths
from pipeline.errors import UserError
from pipeline.inputs import reading
from pipeline.models import load_classifier, load_saved_processor
from pipeline.outputs import write_json
from pipeline.tasks import ImageTask, Processor, TextTask

STAGE = "ensemble"
FOLDER = paths.trained(STAGE)
REPORTS = paths.REPORTS / STAGE
# Written last, so that its presence means every member is complete.
MEMBERS = FOLDER / "members.json"


def member_role(seed: int) -> str:
    """The member's folder under models/trained (and its report's name under reports/)."""
    return f"{STAGE}/{_member(seed)}"


def member_live(seed: int) -> Path:
    """The member's DVCLive folder."""
    return REPORTS / "live" / _member(seed)


def _member(seed: int) -> str:
    return f"seed-{seed}"


def write_members(seeds: list[int]) -> None:
    """Mark the members complete. The reports' copy keeps the stage's git-tracked output a
    file, not an empty folder, when there are no members: git drops empty folders, and a
    clone would then see the stage as changed."""
    write_json(REPORTS / "members.json", {"seeds": seeds})
    write_json(MEMBERS, {"seeds": seeds})


def load_members(
    seeds: list[int], task: TextTask | ImageTask,
) -> list[tuple[PreTrainedModel, Processor]]:
    """The trained members and their processors, refused unless they are the ones params name."""
    if not seeds:
        return []
    with reading(MEMBERS, STAGE) as members:
        trained = json.loads(members.read_text())["seeds"]
    if trained != seeds:
        raise UserError(f"{FOLDER} holds the teachers of seeds {trained}, but soft_targets."
                        f"ensemble_seeds is {seeds}; rebuild it with `dvc repro {STAGE}`.")
    out = []
    for seed in seeds:
        with reading(paths.trained(member_role(seed)), STAGE) as folder:
            out.append((load_classifier(folder, task), load_saved_processor(folder)))
    return out
