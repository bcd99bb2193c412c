"""Model cards rendered from measured figures only, with huggingface_hub's ModelCard."""

from __future__ import annotations

import importlib.metadata
import os
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData
from transformers import AutoConfig

from pipeline import paths
from pipeline.config import Params
from pipeline.models import BUILTIN_CONFIGS
from pipeline.registry import ROLES, VARIANTS, served_name

TEMPLATE = Path(__file__).parent / "templates" / "model_card.md"
# Report keys that go into the model-index, with their Hub metric types.
INDEXED = {"accuracy": "accuracy", "macro_f1": "f1", "in_scope_accuracy": "accuracy",
           "oos_recall": "recall", "oos_precision": "precision"}
FRAMEWORKS = ("transformers", "torch", "datasets", "tokenizers", "dvc", "mlflow")


@dataclass
class CardInputs:
    """Everything a card is rendered from: the run's params and its measured reports."""

    params: Params
    metrics: dict  # reports/metrics.json
    data: dict  # reports/data.json
    history: list[dict]  # per-epoch rows of the model's training stage
    names: list[str]
    example_text: str | None  # a test query, for the usage snippet (None for images)
    # role -> where its starting weights came from ({"hub_id", "revision"}, from the training
    # stage's report): the card's base_model.
    sources: dict[str, dict]
    # Rows of the transfer set the student also learned from (0: none).
    transfer_rows: int = 0
    # What reproduces the run (None: not in a git checkout).
    origin: Origin | None = None
    # role -> its export stage's report (reports/export/<role>.json): how its int8 file is made.
    exports: dict[str, dict] = field(default_factory=dict)


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, check=True,
                             timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


@dataclass
class Origin:
    """What reproduces this run: the commit it started from, the params it changed there
    (`-S key=value`), and its DVC experiment, if it is one."""

    commit: str | None
    changed: list[str]
    experiment: str | None = None


def changed_params(before: dict, after: dict, prefix: str = "") -> list[str]:
    """`key=value` for each params leaf that differs, as `dvc exp run -S` takes them."""
    changed = []
    for key in sorted(after.keys() | before.keys()):
        name, old, new = f"{prefix}{key}", before.get(key), after.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            changed += changed_params(old, new, f"{name}.")
        elif old != new:
            value = yaml.safe_dump(new, default_flow_style=True, width=1000).strip()
            changed.append(f"{name}={value.removesuffix(chr(10) + '...')}")
    return changed


def origin(params_file: Path) -> Origin:
    """Where this run comes from: under `dvc exp run` the experiment's baseline commit and
    name (DVC sets DVC_EXP_BASELINE_REV and DVC_EXP_NAME), else HEAD; and the params that
    differ from that commit's params.yaml (an experiment's, or uncommitted edits)."""
    commit = os.environ.get("DVC_EXP_BASELINE_REV") or _git("rev-parse", "HEAD")
    if commit is None:
        return Origin(None, [])
    committed = _git("show", f"{commit}:{params_file.as_posix()}")
    now = yaml.safe_load(params_file.read_text())
    changed = changed_params(yaml.safe_load(committed) or {}, now) if committed else []
    return Origin(commit[:7], changed, os.environ.get("DVC_EXP_NAME"))


def _versions() -> dict[str, str]:
    return {name: importlib.metadata.version(name) for name in FRAMEWORKS}


def card_data(inputs: CardInputs, role: str) -> ModelCardData:
    p, m = inputs.params, inputs.metrics[role]
    dataset_name = p.card.dataset_name
    dataset_type = p.card.dataset_id or dataset_name.lower().replace(" ", "-")
    results = [
        EvalResult(
            task_type=p.task, dataset_type=dataset_type, dataset_name=dataset_name,
            dataset_split="test", metric_type=hub_type, metric_name=key,
            metric_value=round(float(m[key]), 4),
        )
        for key, hub_type in INDEXED.items() if key in m
    ]
    base = inputs.sources[role].get("hub_id")
    name = p.card.model_name if role == "student" else f"{p.card.model_name}-teacher"
    tags = [p.task, "generated_from_trainer"] + (["knowledge-distillation"] if role == "student" else [])
    return ModelCardData(
        model_name=name,
        library_name="transformers",
        pipeline_tag=p.task,
        license=p.card.license,
        language=p.card.language,
        tags=tags,
        datasets=[p.card.dataset_id] if p.card.dataset_id else None,
        metrics=sorted({INDEXED[k] for k in INDEXED if k in m}),
        base_model=base,
        eval_results=results,
    )


def _builtin_description(model: str, overrides: dict | None) -> str:
    return BUILTIN_CONFIGS[model](**(overrides or {})).describe()


def _student_init(p: Params) -> tuple[str, str]:
    s = p.student
    if s.model in BUILTIN_CONFIGS:
        description = _builtin_description(s.model, s.config_overrides)
        return f"{description}, built from a config with random weights", description
    if s.init == "teacher_layers":
        which = ("the fine-tuned teacher's" if s.from_teacher == "finetuned"
                 else "the teacher's, as before fine-tuning (with a new classification head),")
        return (f"{which} embeddings, classifier and its layers {s.layers} "
                "(DistilBERT-style initialisation)", f"{len(s.layers)}-layer")
    if s.init == "pretrained":
        return f"initialised from `{s.model}`", f"`{s.model}`"
    return "built from a config with random weights", "compact"


def render(inputs: CardInputs, role: str) -> ModelCard:
    """The model card of `role` ("student" or "teacher")."""
    p, metrics = inputs.params, inputs.metrics
    init, architecture = _student_init(p)
    if role == "teacher":
        architecture = f"{metrics['teacher']['parameters'] / 1e6:.1f}M-parameter"
    teacher_builtin = p.teacher.model in BUILTIN_CONFIGS
    # A reader needs the model an alias stands for, not the alias.
    teacher_hub = inputs.sources["teacher"].get("hub_id")
    teacher_model = (_builtin_description(p.teacher.model, p.teacher.config_overrides)
                     if teacher_builtin else f"`{teacher_hub or p.teacher.model}`")
    train = p.student.train if role == "student" else p.teacher.train
    return ModelCard.from_template(
        card_data(inputs, role),
        template_path=str(TEMPLATE),
        role=role,
        model_name=p.card.model_name if role == "student" else f"{p.card.model_name}-teacher",
        architecture=architecture,
        student_init=init,
        task=p.task,
        is_text=p.task == "text-classification",
        custom_code=p.student.model in BUILTIN_CONFIGS if role == "student" else teacher_builtin,
        teacher_model=teacher_model,
        teacher_builtin=teacher_builtin,
        teacher_finetuned=p.teacher.finetune,
        num_labels=len(inputs.names),
        dataset_name=p.card.dataset_name,
        dataset_citation=p.card.dataset_citation,
        has_oos=bool(p.data.oos_label) and p.data.oos_label in inputs.names,
        oos_label=p.data.oos_label,
        alpha=p.alpha,
        temperature=p.temperature,
        word_embeddings_frozen=p.student.freeze_word_embeddings,
        seed=p.seed_of(role),
        max_length=p.data.max_length,
        jitter=p.teacher.jitter if role == "teacher" else 0,
        train=train,
        history=inputs.history,
        metrics=metrics,
        m=metrics[role],
        speed=metrics["speed"],
        ratios=metrics["student_vs_teacher"],
        paired=metrics["student_vs_baseline"],
        features=p.features,
        layer_map=p.layer_map(),
        transfer_rows=inputs.transfer_rows,
        ensemble_seeds=p.soft_targets.ensemble_seeds,
        seed_teacher=p.seed,
        speedup=metrics["speed"]["student_speedup"],
        device=metrics["speed"]["device"],
        throughput_batch=p.evaluate.throughput_batch_size,
        data=inputs.data,
        example_text=(inputs.example_text or "").replace('"', "'"),
        versions=_versions(),
        quantized_embeddings=inputs.exports.get(role, {}).get("embeddings", "int8"),
        origin=inputs.origin,
        set_params=" ".join(f"-S {shlex.quote(c)}" for c in inputs.origin.changed)
        if inputs.origin else "",
        repository=p.card.repository,
        repo_id=(p.card.repo_id if role == "student" or p.card.repo_id is None
                 else f"{p.card.repo_id}-teacher"),
        folder=paths.release(role).as_posix(),
        roles=ROLES,
        variants=VARIANTS,
        served_name=served_name,
        onnx_device=metrics["speed"].get("onnx_device"),
        base=inputs.sources[role],
        data_revision=inputs.data.get("source_revision"),
        fmt=lambda v, digits: "–" if v is None else f"{v:.{digits}f}",
        pct=lambda v: f"{100 * v:.1f}%",
        count=lambda v: f"{v:,}",
    )


def store_threshold(folder: Path, threshold: float) -> None:
    """Keep the out-of-scope threshold in the published model's config.json (`oos_threshold`),
    where whoever loads the model finds it: transformers keeps unknown config keys."""
    config = AutoConfig.from_pretrained(folder)
    config.oos_threshold = threshold
    config.save_pretrained(folder)
