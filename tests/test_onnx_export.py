"""ONNX export round trip on tiny config-built models: fp32 equal to PyTorch across batch and
sequence shapes, int8 agreeing with it, and the quantization gate that refuses a model int8
breaks."""

import numpy as np
import onnx
import pytest
import torch
from conftest import tiny_bert
from test_evaluation import WORDS, tokenizer

from pipeline import inference, onnx_export
from pipeline.errors import UserError
from pipeline.tasks import get_task

TEXT = get_task("text-classification")
rng = np.random.default_rng(0)
# Queries of 1 to 12 words: the sequence axis takes many sizes.
QUERIES = [" ".join(rng.choice(WORDS, size=n)) for n in rng.integers(1, 13, size=60)]


def predictions(model) -> np.ndarray:
    with torch.no_grad():
        return model(**TEXT.batch(tokenizer(), QUERIES, 32)).logits.argmax(-1).numpy()


def run_export(model, folder, labels, int8_tolerance=0.2):
    return onnx_export.export(model, tokenizer(), TEXT, QUERIES, labels, folder, max_length=32,
                              batch_size=16, logits_tolerance=1e-4,
                              int8_tolerance=int8_tolerance, name="student")


def test_fp32_equals_pytorch_and_int8_agrees(tmp_path):
    model = tiny_bert(layers=2)
    labels = predictions(model)  # fp32 is right on every row: any int8 change shows
    result = run_export(model, tmp_path, labels)
    assert result.logit_difference <= 1e-4
    assert result.fp32_validation_accuracy == 1.0
    assert result.int8_validation_accuracy >= 0.8
    assert result.remedy == next(iter(result.tried))
    fp32 = onnx_export.served(tmp_path / onnx_export.FP32, tokenizer(), TEXT, 32)
    for batch, length in ((1, 1), (3, 4), (7, 12)):
        texts = [" ".join(["balance"] * length)] * batch
        with torch.no_grad():
            expected = model(**TEXT.batch(tokenizer(), texts, 32)).logits.numpy()
        np.testing.assert_allclose(fp32.forward(fp32.encode(texts)), expected, atol=1e-4)
    int8 = onnx_export.served(tmp_path / onnx_export.INT8, tokenizer(), TEXT, 32)
    agree = inference.logits(int8, TEXT, QUERIES, 16).argmax(-1) == labels
    assert agree.mean() == result.int8_validation_accuracy
    assert (tmp_path / onnx_export.INT8).stat().st_size < (tmp_path / onnx_export.FP32).stat().st_size
    # The quantizer's scratch files stay out of the working directory and the folder.
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([onnx_export.FP32, onnx_export.INT8])


def outlier_feature(model) -> None:
    """Hidden feature 0 a thousand times the others after every LayerNorm, and read by no dense
    layer: the fp32 model computes what it did (up to scale), but int8's dynamic quantization
    of each layer's input, one scale per tensor, rounds every other feature to zero."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight[0] = 1000.0
            if isinstance(module, torch.nn.Linear) and module.in_features == model.config.hidden_size:
                module.weight[:, 0] = 0.0


def test_a_model_int8_breaks_is_refused_and_nothing_int8_is_left(tmp_path):
    model = tiny_bert(layers=2, seed=1)
    outlier_feature(model)
    labels = predictions(model)
    with pytest.raises(UserError, match=r"loses more validation accuracy than "
                       r"export.int8_tolerance \(0.02\) with every remedy tried"):
        run_export(model, tmp_path, labels, int8_tolerance=0.02)
    assert not (tmp_path / onnx_export.INT8).exists()


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_builtin_image_models_export_with_a_dynamic_batch(tmp_path, name):
    from test_vision import image_split

    from pipeline.models import BUILTIN_CONFIGS, builtin_processor
    from pipeline.tasks import image_shape

    image = get_task("image-classification")
    train = image_split(40, size=8)
    processor = builtin_processor(train)
    torch.manual_seed(0)
    config = BUILTIN_CONFIGS[name](num_labels=3, **image_shape(train[0]["image"]))
    model = image.auto_model.from_config(config).eval()
    images = train["image"]
    with torch.no_grad():
        labels = model(**image.batch(processor, images, 0)).logits.argmax(-1).numpy()
    result = onnx_export.export(model, processor, image, images, labels, tmp_path, max_length=0,
                                batch_size=7, logits_tolerance=1e-4, int8_tolerance=0.2,
                                name="student")
    assert result.logit_difference <= 1e-4 and result.fp32_validation_accuracy == 1.0
    fp32 = onnx_export.session(tmp_path / onnx_export.FP32)
    assert [i.name for i in fp32.get_inputs()] == ["pixel_values"]
    assert fp32.get_inputs()[0].shape[1:] == [1, 8, 8]  # only the batch axis is dynamic


def test_a_pruned_vocabulary_keeps_the_training_tokens_and_maps_the_rest_to_unknown(tmp_path):
    model = tiny_bert(layers=2)
    seen = [q for q in QUERIES if "joke" not in q.split()]
    keep = onnx_export.used_vocabulary(tokenizer(), seen, 32)
    assert tokenizer().convert_tokens_to_ids("joke") not in keep
    assert set(tokenizer().all_special_ids) <= set(keep)
    labels = predictions(model)
    result = onnx_export.export(model, tokenizer(), TEXT, seen, labels[:len(seen)], tmp_path,
                                max_length=32, batch_size=16, logits_tolerance=1e-4,
                                int8_tolerance=0.2, name="student", keep=keep)
    assert result.fp32_validation_accuracy == 1.0  # every token of these queries was kept
    fp32 = onnx_export.served(tmp_path / onnx_export.FP32, tokenizer(), TEXT, 32)
    with torch.no_grad():
        unknown = model(**TEXT.batch(tokenizer(), ["tell mom a [UNK]"], 32)).logits.numpy()
    np.testing.assert_allclose(fp32.forward(fp32.encode(["tell mom a joke"])), unknown, atol=1e-5)
    rate = onnx_export.unknown_rate(tokenizer(), ["tell mom a joke"], 32, keep)
    assert rate == pytest.approx(1 / 6)  # [CLS] tell mom a joke [SEP]
    full = tmp_path / "full"
    full.mkdir()
    run_export(model, full, labels)
    assert (tmp_path / onnx_export.FP32).stat().st_size < (full / onnx_export.FP32).stat().st_size


def int4_table(path, name: str) -> np.ndarray:
    """An embedding table of a quantized file, decoded from its 4-bit blocks: (q - zero point)
    x scale, one scale and zero point per block of a row."""
    from onnx import load, numpy_helper

    inits = {i.name: numpy_helper.to_array(i) for i in load(str(path)).graph.initializer}
    q = inits[f"{name}_Q4"].astype(np.float32)
    scales, zeros = inits[f"{name}_scales"], inits[f"{name}_zero_points"].astype(np.float32)
    block = q.shape[1] // scales.shape[1]
    return (q - np.repeat(zeros, block, axis=1)) * np.repeat(scales, block, axis=1)


def test_int4_embeddings_round_each_row_to_its_blocks_and_shrink_the_file(tmp_path):
    model = tiny_bert(layers=2)
    labels = predictions(model)
    int8_folder, int4_folder = tmp_path / "int8", tmp_path / "int4"
    int8_folder.mkdir()
    int4_folder.mkdir()
    run_export(model, int8_folder, labels)
    result = onnx_export.export(model, tokenizer(), TEXT, QUERIES, labels, int4_folder,
                                max_length=32, batch_size=16, logits_tolerance=1e-4,
                                int8_tolerance=0.2, name="student",
                                embeddings=onnx_export.Embeddings(bits=4, block_size=16))
    assert result.embeddings == "int4" and result.int8_validation_accuracy >= 0.8
    path = int4_folder / onnx_export.INT8
    table = model.bert.embeddings.word_embeddings.weight.detach().numpy()
    decoded = int4_table(path, "model.bert.embeddings.word_embeddings.weight")
    assert decoded.shape == table.shape == (120, 32)
    # Every value within half a step of its block (16 steps between the block's extremes).
    step = (np.maximum(table.reshape(120, 2, 16).max(-1), 0)
            - np.minimum(table.reshape(120, 2, 16).min(-1), 0)) / 15
    assert (np.abs(decoded - table) <= np.repeat(step, 16, axis=1) / 2 + 1e-6).all()
    assert path.stat().st_size < (int8_folder / onnx_export.INT8).stat().st_size
    # Only the word embeddings take 4 bits; the smaller tables are int8 Gathers.
    graph = onnx.load(str(path)).graph
    assert [n.input[0] for n in graph.node if n.op_type == "GatherBlockQuantized"] == [
        "model.bert.embeddings.word_embeddings.weight_Q4"]
    eight_bit = {i.name for i in graph.initializer
                 if i.data_type in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8)}
    assert {"model.bert.embeddings.position_embeddings.weight_quantized",
            "model.bert.embeddings.token_type_embeddings.weight_quantized"} <= eight_bit
    served = onnx_export.served(path, tokenizer(), TEXT, 32)
    agree = inference.logits(served, TEXT, QUERIES, 16).argmax(-1) == labels
    assert agree.mean() == result.int8_validation_accuracy
