"""Model-card rendering from measured figures only (huggingface_hub ModelCard)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from pipeline.config import Params

TEMPLATE = Path(__file__).parent / "templates" / "model_card.md"
TASK = "text-classification"
# Keys of the evaluate report that go into the model-index, with their Hub metric types.
INDEXED_METRICS = {"accuracy": "accuracy", "macro_f1": "f1"}


def _commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, check=True, timeout=10)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "<commit>"


def card_data(params: Params, metrics: dict) -> ModelCardData:
    student = metrics["student"]
    dataset_name = params.card.dataset_name
    dataset_type = params.card.dataset_id or dataset_name.replace(" ", "_")
    results = [
        EvalResult(
            task_type=TASK, dataset_type=dataset_type, dataset_name=dataset_name,
            dataset_split="test", metric_type=hub_type, metric_name=key,
            metric_value=round(float(student[key]), 4),
        )
        for key, hub_type in INDEXED_METRICS.items()
    ]
    return ModelCardData(
        model_name=params.card.model_name,
        library_name="transformers",
        pipeline_tag=TASK,
        license=params.card.license,
        language=params.card.language,
        tags=["knowledge-distillation", "generated_from_trainer", "text-classification"],
        datasets=[params.card.dataset_id] if params.card.dataset_id else None,
        metrics=sorted(set(INDEXED_METRICS.values())),
        base_model=params.teacher.model if "/" in params.teacher.model else None,
        eval_results=results,
    )


def render(params: Params, metrics: dict, names: list[str], example_text: str) -> ModelCard:
    speed = metrics["speed"]
    results = [
        {
            "role": role,
            "accuracy": metrics[role]["accuracy"],
            "macro_f1": metrics[role]["macro_f1"],
            "latency": speed[role]["latency_ms_median"],
            "parameters": metrics[role]["parameters"],
            "size_mb": metrics[role]["size_mb"],
        }
        for role in ("teacher", "baseline", "student")
    ]
    s = params.student
    if s.init == "teacher_layers":
        init = f"the teacher's embeddings, classifier and layers {s.layers} (DistilBERT-style)"
        layers_text = f"{len(s.layers)}-layer"
    elif s.init == "pretrained":
        init, layers_text = f"initialised from `{s.model}`", "compact"
    else:
        init, layers_text = "built from a config with random weights", "compact"
    return ModelCard.from_template(
        card_data(params, metrics),
        template_path=str(TEMPLATE),
        model_name=params.card.model_name,
        student_layers_text=layers_text,
        student_init_text=init,
        teacher_model=params.teacher.model,
        num_labels=len(names),
        dataset_name=params.card.dataset_name,
        has_oos=params.data.oos_label in names,
        oos_label=params.data.oos_label,
        teacher_params=f"{metrics['teacher']['parameters']:,}",
        student_params=f"{metrics['student']['parameters']:,}",
        alpha=params.alpha,
        temperature=params.temperature,
        results=results,
        ratios=metrics["student_vs_teacher"],
        speedup=speed["student_speedup"],
        device=speed["device"],
        example_text=example_text.replace('"', "'"),
        commit=_commit(),
    )
