"""Where stages read and write; dvc.yaml declares the same paths."""

from pathlib import Path

PARAMS = Path("params.yaml")
PREPARED = Path("data/prepared")
SOFT_TARGETS = Path("data/soft_targets")
TRAINED = Path("models/trained")
RELEASE = Path("models")
REPORTS = Path("reports")
LIVE = REPORTS / "live"
PLOTS = REPORTS / "plots"
METRICS = REPORTS / "metrics.json"
# The headline of metrics.json: what `dvc exp show` and `dvc metrics show` list.
SUMMARY = REPORTS / "summary.json"
EXPORTS = REPORTS / "export"
# Written by the check stage, which every stage depends on (see stages/check.py).
PARAMS_CHECK = REPORTS / "params_check.json"


def trained(role: str) -> Path:
    """The folder a training stage writes: models/trained/<role>."""
    return TRAINED / role


def release(role: str) -> Path:
    """The folder the card stage writes for publishing: models/<role>, weights + card."""
    return RELEASE / role


def onnx(role: str) -> Path:
    """The folder the export stage writes: models/onnx/<role>, fp32 and int8 ONNX files."""
    return RELEASE / "onnx" / role


def checkpoints(stage: str) -> Path:
    """Per-epoch checkpoints of a running training stage; removed when the stage completes."""
    return TRAINED.parent / "checkpoints" / stage
