"""The project's own source files a stage runs: its script and every `pipeline` module it
imports, directly or through another module.

dvc.yaml lists the same files as the stage's deps (a test compares them), and a training
stage's checkpoint fingerprint hashes them, so that a resumed run never continues a checkpoint
made by other code.
"""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "pipeline"


def _imported(path: Path) -> set[str]:
    """Dotted names of the `pipeline` modules that `path` imports."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == PACKAGE)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] != PACKAGE:
                continue
            found.add(node.module)
            # `from pipeline import data` imports the module pipeline/data.py.
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return found


def _file(module: str, root: Path) -> Path | None:
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def stage_sources(script: str | Path, root: Path = ROOT) -> list[Path]:
    """The stage script and the project modules it needs, relative to `root`, sorted.

    Package `__init__.py` files are left out: they are empty, and DVC need not watch them.
    """
    pending, seen = [root / script], set()
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        for module in _imported(path):
            found = _file(module, root)
            if found is not None and found not in seen:
                pending.append(found)
    return sorted(p.relative_to(root) for p in seen if p.name != "__init__.py")


def code_digest(script: str | Path, root: Path = ROOT) -> str:
    """sha256 over the stage's source files (names and contents)."""
    digest = hashlib.sha256()
    for rel in stage_sources(script, root):
        digest.update(str(rel).encode() + b"\0" + (root / rel).read_bytes() + b"\0")
    return digest.hexdigest()
