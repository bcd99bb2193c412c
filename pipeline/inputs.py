"""Reading what an earlier stage wrote: a missing or damaged output is one line that names the
stage that rebuilds it, whether the stage runs under `dvc repro` or by hand."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipeline.errors import UserError


@contextmanager
def reading(path: str | Path, stage: str) -> Iterator[Path]:
    """Load `path`, an output of `stage`, inside the block."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path} not found: the {stage} stage writes it; run `dvc repro {stage}` "
                        "(or `dvc repro`) first.")
    try:
        yield path
    except UserError:
        raise
    except Exception as exc:  # what a cut file raises depends on the library that reads it
        cause = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path} is damaged ({cause[:200]}): rebuild it with "
                        f"`dvc repro --force {stage}`, or restore it with `dvc checkout {path}`.") from None


def read_json(path: str | Path, stage: str) -> dict:
    """A json report of `stage`."""
    with reading(path, stage) as path:
        return json.loads(path.read_text())
