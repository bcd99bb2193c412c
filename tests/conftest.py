import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
import yaml
from transformers import BertConfig, BertForSequenceClassification

ROOT = Path(__file__).parents[1]

# Nothing in the tests may reach the network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["DVC_NO_ANALYTICS"] = "1"
os.environ["TRANSFORMERS_NO_ADVISORY_WARNINGS"] = "1"

LABELS = ["balance", "oos", "transfer"]
DEFAULT_PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())


def config(section: str, **changes):
    """A params section as params.yaml sets it, with `changes` (every key is required, so tests
    start from the shipped values rather than from defaults of their own)."""
    from pipeline.config import Params

    values = {**DEFAULT_PARAMS[section], **changes}
    if section == "data" and "source" in changes and "watch" not in changes:
        source = str(changes["source"])
        values["watch"] = "pipeline/data.py" if source.startswith(("hub:", "sklearn:")) else source
    return Params.model_fields[section].annotation.model_validate(values)


def tiny_bert(layers: int = 4, num_labels: int = len(LABELS), seed: int = 0):
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=120, hidden_size=32, num_hidden_layers=layers, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=64, num_labels=num_labels,
        id2label=dict(enumerate(LABELS[:num_labels])),
        label2id={n: i for i, n in enumerate(LABELS[:num_labels])},
    )
    return BertForSequenceClassification(config).eval()


@pytest.fixture
def teacher4():
    return tiny_bert(layers=4)


def run_checked(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run a command in `cwd`; fail the test with its output if it fails."""
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True,
                         env={**os.environ, **(env or {})})
    assert out.returncode == 0, f"{' '.join(cmd)} failed:\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}"
    return out.stdout + out.stderr


def scratch_project(repo: Path, params: dict, env: dict[str, str] | None = None) -> None:
    """The project's code and dvc.yaml with `params` (and whatever `repo` already holds),
    committed in a new git + DVC repository, not yet run."""
    for name in ("pipeline", "stages"):
        shutil.copytree(ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "dvc.yaml", repo)
    # The soft_targets stage watches the folder of unlabelled transfer-set text.
    shutil.copytree(ROOT / "data" / "transfer", repo / "data" / "transfer", dirs_exist_ok=True)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for cmd in (["git", "init", "-q"], ["git", "config", "user.email", "ci@example.com"],
                ["git", "config", "user.name", "ci"], ["dvc", "init", "-q"],
                ["git", "add", "-A"], ["git", "commit", "-qm", "scratch"]):
        run_checked(cmd, repo, env)
