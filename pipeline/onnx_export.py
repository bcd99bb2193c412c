"""A trained classifier as ONNX: fp32 with dynamic batch (and sequence) axes, and int8 by ONNX
Runtime's dynamic quantization (its embedding tables in int8 or, by block, in 4 bits). Both are
checked before anything is written: fp32 against the PyTorch model's logits, int8 against fp32's
validation accuracy.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnxruntime.quantization import QuantType, quantize_dynamic
from onnxruntime.quantization.matmul_nbits_quantizer import (
    DefaultWeightOnlyQuantConfig,
    MatMulNBitsQuantizer,
)
from torch import nn
from transformers import BatchFeature, PreTrainedModel

from pipeline.errors import UserError
from pipeline.inference import Served, logits
from pipeline.registry import VARIANTS
from pipeline.tasks import ImageTask, Processor, TextTask

log = logging.getLogger(__name__)

FP32, INT8 = VARIANTS["onnx_fp32"].file, VARIANTS["onnx_int8"].file
OUTPUT = "logits"
# The ops dynamic quantization turns to int8 when told nothing: MatMul (every dense layer) and
# Gather (the embedding tables, most of a small BERT's bytes).
_ALL_OPS = ["MatMul", "Gather"]


@dataclass(frozen=True)
class Remedy:
    """One way to quantize, from the default to the most conservative (ONNX Runtime's documented
    remedies for accuracy lost to quantization)."""

    name: str
    per_channel: bool = False
    reduce_range: bool = False
    op_types: list[str] = field(default_factory=lambda: list(_ALL_OPS))
    keep_classifier: bool = False  # the last dense layer, which writes the logits, stays fp32


# Per-channel scales come first: on both CLINC150 models they cost nothing in size (+0.1%) and
# lose less than one scale per tensor (the student: 0.04 against 0.29 validation points lost, the
# teacher: 0.29 against 0.42; bench/quantization.py).
REMEDIES = (
    Remedy("per_channel", per_channel=True),
    Remedy("per_channel_reduce_range", per_channel=True, reduce_range=True),
    Remedy("fp32_classifier", per_channel=True, keep_classifier=True),
    Remedy("fp32_embeddings", per_channel=True, keep_classifier=True, op_types=["MatMul"]),
)


class _Logits(nn.Module):
    """What is exported: the model with its inputs as positional tensors, in `names` order, and
    the logits as its one output (the form torch.export maps dynamic shapes onto); with `keep`,
    a vocabulary pruned to those token ids (see prune_vocabulary)."""

    def __init__(self, model: PreTrainedModel, names: list[str],
                 keep: np.ndarray | None = None, unknown: int | None = None) -> None:
        super().__init__()
        self.names = names
        remap = None
        if keep is not None:
            model, remap = prune_vocabulary(model, keep, unknown)
        self.model = model
        self.register_buffer("remap", remap)

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        inputs = dict(zip(self.names, tensors, strict=True))
        if self.remap is not None:
            inputs["input_ids"] = self.remap[inputs["input_ids"]]
        return self.model(**inputs).logits


def _token_ids(processor: Processor, texts: Sequence[str], max_length: int) -> np.ndarray:
    """Every token id the tokenizer gives `texts`, as the model sees them (truncated)."""
    return np.concatenate(processor(list(texts), truncation=True, max_length=max_length)["input_ids"])


def used_vocabulary(processor: Processor, texts: Sequence[str], max_length: int) -> np.ndarray:
    """The token ids the tokenizer gives `texts`, and its special tokens, sorted."""
    return np.unique(np.concatenate([_token_ids(processor, texts, max_length),
                                     processor.all_special_ids]))


def unknown_rate(processor: Processor, texts: Sequence[str], max_length: int,
                 keep: np.ndarray) -> float:
    """The share of the tokens of `texts` that a vocabulary of `keep` lacks (they become the
    unknown token)."""
    return float(1 - np.isin(_token_ids(processor, texts, max_length), keep).mean())


def prune_vocabulary(model: PreTrainedModel, keep: np.ndarray,
                     unknown: int) -> tuple[PreTrainedModel, torch.Tensor]:
    """A copy of `model` whose word embeddings hold the rows `keep` only, and the table that
    maps a tokenizer id to its row there (an id not kept maps to the row of `unknown`, the
    tokenizer's unknown token, which `keep` holds).

    The tokenizer stays as it is: ids are remapped inside the model, at the cost of a table of
    one int64 per vocabulary entry.
    """
    pruned = copy.deepcopy(model)
    table = pruned.get_input_embeddings()
    rows = torch.as_tensor(keep, dtype=torch.long)
    remap = torch.full((table.num_embeddings,), int(np.searchsorted(keep, unknown)),
                       dtype=torch.long)
    remap[rows] = torch.arange(len(keep))
    smaller = nn.Embedding(len(keep), table.embedding_dim)
    smaller.weight.data = table.weight.data[rows].clone()
    pruned.set_input_embeddings(smaller)
    return pruned, remap


def session(path: str | Path, threads: int | None = None) -> ort.InferenceSession:
    """An ONNX Runtime CPU session; `threads` intra-op threads (None: ONNX Runtime's choice)."""
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    options.log_severity_level = 3  # warnings about unused initializers are not for users
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _feed(sess: ort.InferenceSession, enc: BatchFeature | dict) -> dict[str, np.ndarray]:
    """The inputs the graph takes, from a processor's output, as numpy."""
    return {i.name: enc[i.name].numpy() if torch.is_tensor(enc[i.name]) else np.asarray(enc[i.name])
            for i in sess.get_inputs()}


def served(path: str | Path, processor: Processor, task: TextTask | ImageTask,
           max_length: int) -> Served:
    """An ONNX file as pipeline.inference serves models: on the CPU, with as many intra-op
    threads as PyTorch uses, so that the two are timed on equal terms. Inputs are converted to
    numpy when encoded, so that timing covers the run alone, as it does for PyTorch."""
    sess = session(path, threads=torch.get_num_threads())
    return Served(encode=lambda inputs: _feed(sess, task.batch(processor, inputs, max_length)),
                  forward=lambda feed: sess.run([OUTPUT], feed)[0])


def export_fp32(module: _Logits, example: BatchFeature, path: Path,
                task: TextTask | ImageTask) -> None:
    """Write `module` as one ONNX file; batch (and, for text, sequence) axes dynamic.

    `example`: a processor's output of at least two rows (and two tokens), so that the exporter
    does not specialise an axis to size 1.
    """
    batch = torch.export.Dim("batch")
    axes = ({0: batch, 1: torch.export.Dim("sequence")} if isinstance(task, TextTask)
            else {0: batch})
    # The exporter's notes on its own internals (warnings, INFO logs) are not for users.
    with warnings.catch_warnings(), torch.inference_mode(False), _quiet():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module, tuple(example[n].cpu() for n in module.names), dynamo=True,
            dynamic_shapes=(tuple(axes for _ in module.names),), input_names=module.names,
            output_names=[OUTPUT], external_data=False, verbose=False,
        )
    program.save(str(path))


def _classifier_nodes(model: onnx.ModelProto) -> list[str]:
    """The last dense layer: the last MatMul / Gemm in the (topologically sorted) graph."""
    dense = [n.name for n in model.graph.node if n.op_type in {"MatMul", "Gemm"}]
    return dense[-1:]


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


@dataclass(frozen=True)
class Embeddings:
    """How the quantized model stores its embedding tables (the Gather ops on weights)."""

    bits: int  # 8: with the dense layers, by quantize_dynamic; 4: by blocks of one row
    block_size: int  # values of a row that share a 4-bit scale and zero point


INT8_EMBEDDINGS = Embeddings(bits=8, block_size=0)


def quantize_int8(fp32: Path, out: Path, remedy: Remedy,
                  embeddings: Embeddings = INT8_EMBEDDINGS) -> None:
    """Dynamic int8 quantization of the fp32 file, as `remedy` says; the word-embedding table in
    `embeddings.bits` unless the remedy leaves the tables in fp32 (the smaller tables, positions
    and token types, in int8 either way)."""
    model = onnx.load(str(fp32))
    # The exporter annotates intermediate values with shapes that ONNX's shape inference, which
    # the quantizer runs, contradicts; ONNX Runtime infers them again when it loads the model.
    del model.graph.value_info[:]
    exclude = _classifier_nodes(model) if remedy.keep_classifier else []
    word = (_largest_table(model) if embeddings.bits == 4 and "Gather" in remedy.op_types
            else None)
    out = out.resolve()
    # The quantizer writes scratch files into the working directory: give it its own. It logs
    # every tensor it skips on the root logger: not for users.
    with tempfile.TemporaryDirectory() as tmp, contextlib.chdir(tmp), _quiet():
        onnx.save(model, "fp32.onnx")
        quantize_dynamic("fp32.onnx", "int8.onnx", weight_type=QuantType.QInt8,
                         per_channel=remedy.per_channel, reduce_range=remedy.reduce_range,
                         op_types_to_quantize=remedy.op_types,
                         nodes_to_exclude=exclude + ([word] if word else []),
                         # Tensors of com.microsoft ops (fused graphs) have no inferred type.
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        if word:
            _embeddings_int4("int8.onnx", word, embeddings.block_size)
        Path("int8.onnx").replace(out)


def _largest_table(model: onnx.ModelProto) -> str | None:
    """The Gather node that reads the largest weight table (a text model's word embeddings), or
    None if no Gather reads a weight."""
    sizes = {i.name: int(np.prod(i.dims)) for i in model.graph.initializer}
    tables = [n for n in model.graph.node if n.op_type == "Gather" and n.input[0] in sizes]
    return max(tables, key=lambda n: sizes[n.input[0]]).name if tables else None


def _embeddings_int4(path: str, node: str, block_size: int) -> None:
    """The table that Gather `node` reads in 4 bits, a scale and zero point per `block_size`
    values of a row (ONNX Runtime's GatherBlockQuantized, a com.microsoft op).

    The other tables stay in int8: a GatherBlockQuantized call costs about 45 us on the CLINC150
    student whatever its table's size (an int8 Gather: 5 us), so 4 bits pay only where the bytes
    are."""
    model = onnx.load(path)
    others = [n.name for n in model.graph.node if n.op_type == "Gather" and n.name != node]
    options = dict(block_size=block_size, is_symmetric=False, op_types_to_quantize=("Gather",),
                   quant_axes=(("Gather", 1),))
    quantizer = MatMulNBitsQuantizer(model, **options, nodes_to_exclude=others,
                                     algo_config=DefaultWeightOnlyQuantConfig(**options))
    # A block of zeros (an all-zero padding row) has no scale; the quantizer handles it, after
    # numpy warns of the division.
    with np.errstate(divide="ignore", invalid="ignore"):
        quantizer.process()
    quantizer.model.save_model_to_file(path, use_external_data_format=False)


def shapes_checked(inputs: Sequence[Any], task: TextTask | ImageTask) -> list[list[Any]]:
    """Batches of 1, 3 and 16 real inputs: for text, the shortest, middling and longest ones,
    so that the sequence axis takes several sizes too."""
    order = task.order(inputs)
    n = len(order)
    picks = [order[:1], order[n // 2 : n // 2 + 3], order[max(n - 16, 0):]]
    return [[inputs[int(i)] for i in rows] for rows in picks]


@torch.inference_mode()
def logit_difference(module: _Logits, onnx: Served, processor: Processor,
                     task: TextTask | ImageTask, inputs: Sequence[Any], max_length: int) -> float:
    """The largest difference between PyTorch's and ONNX Runtime's fp32 logits, relative to the
    largest logit (or to 1, if that is smaller): float rounding grows with the logits' scale."""
    worst = 0.0
    for batch in shapes_checked(inputs, task):
        enc = task.batch(processor, batch, max_length)
        reference = module(*(enc[n] for n in module.names)).numpy()
        scale = max(1.0, float(np.abs(reference).max()))
        worst = max(worst, float(np.abs(onnx.forward(onnx.encode(batch)) - reference).max()) / scale)
    return worst


@dataclass
class Export:
    """What an export measured (the stage writes it to reports/export/<role>.json)."""

    logit_difference: float  # relative, as logit_difference measures it
    fp32_validation_accuracy: float
    int8_validation_accuracy: float
    remedy: str
    tried: dict[str, float]  # remedy -> its int8 validation accuracy
    embeddings: str  # how the int8 file stores its embedding tables: int8, int4 or fp32


def export(model: PreTrainedModel, processor: Processor, task: TextTask | ImageTask,
           validation: Sequence[Any], labels: np.ndarray, folder: Path, max_length: int,
           batch_size: int, logits_tolerance: float, int8_tolerance: float,
           name: str, keep: np.ndarray | None = None,
           embeddings: Embeddings = INT8_EMBEDDINGS) -> Export:
    """Write FP32 and INT8 into `folder`, each checked; raise UserError if a check fails.
    `keep`: the token ids to keep in the word embeddings (None: all)."""
    fp32, int8 = folder / FP32, folder / INT8
    example = task.batch(processor, shapes_checked(validation, task)[1], max_length)
    names = [n for n in example if torch.is_tensor(example[n])]
    unknown = getattr(processor, "unk_token_id", None)
    if getattr(model.config, "_attn_implementation", None) == "sdpa":
        # SDPA exports with guards eager attention does not need (163 against 127 nodes for
        # the CLINC150 student): the same logits (1e-6), and the int8 file ~9% faster at batch 1.
        model.set_attn_implementation("eager")
    module = _Logits(model.float().cpu().eval(), names, keep, unknown).eval()
    export_fp32(module, example, fp32, task)
    fp32_model = served(fp32, processor, task, max_length)
    difference = logit_difference(module, fp32_model, processor, task, validation, max_length)
    if not difference <= logits_tolerance:
        raise UserError(
            f"the ONNX export of the {name} differs from the PyTorch model by {difference:.2e} "
            f"of its largest logit, more than export.logits_tolerance ({logits_tolerance:g}); "
            "nothing is published. Report the model's architecture as an export bug."
        )

    def accuracy(model: Served, path: Path) -> float:
        pred = logits(model, task, validation, batch_size, desc=f"{name} {path.name}")
        return float((pred.argmax(-1) == labels).mean())

    reference = accuracy(fp32_model, fp32)
    tried: dict[str, float] = {}
    for remedy in REMEDIES:
        quantize_int8(fp32, int8, remedy, embeddings)
        tried[remedy.name] = accuracy(served(int8, processor, task, max_length), int8)
        log.info("%s int8 (%s): validation accuracy %.4f, fp32 %.4f", name, remedy.name,
                 tried[remedy.name], reference)
        if reference - tried[remedy.name] <= int8_tolerance:
            stored = f"int{embeddings.bits}" if "Gather" in remedy.op_types else "fp32"
            return Export(difference, reference, tried[remedy.name], remedy.name, tried, stored)
    int8.unlink()
    losses = ", ".join(f"{k} {reference - v:.4f}" for k, v in tried.items())
    raise UserError(
        f"int8 quantization of the {name} loses more validation accuracy than "
        f"export.int8_tolerance ({int8_tolerance:g}) with every remedy tried (loss: {losses}); "
        "no model is published. Raise export.int8_tolerance to accept the loss."
    )
