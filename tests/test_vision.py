"""Image classification: data sources, built-in CNN / MLP models, Hub image models, params checks."""

from pathlib import Path
from unittest import mock

import datasets
import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessorPil
from transformers import pipeline as hf_pipeline

from conftest import config
from pipeline.config import load_params, parse_params
from pipeline.data import data_report, prepare_dataset, train_test_overlap
from pipeline.errors import UserError
from pipeline.models import (
    build_student,
    build_teacher,
    builtin_processor,
    count_parameters,
    load_processor,
    load_saved_processor,
    student_from_teacher,
)
from pipeline.tasks import get_task

ROOT = Path(__file__).parents[1]
IMAGE = get_task("image-classification")
DIGITS = [str(d) for d in range(10)]


def images(n: int, size: int = 8, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8), mode="L")
            for _ in range(n)]


def image_split(n: int, size: int = 8, seed: int = 0) -> datasets.Dataset:
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=DIGITS)})
    return datasets.Dataset.from_dict(
        {"image": images(n, size, seed), "label": [i % 10 for i in range(n)]}, features=features)


@pytest.fixture(scope="module")
def digits():
    return prepare_dataset(config("data", source="sklearn:digits", oos_label=None), seed=0, column="image")


def test_sklearn_digits_source(digits):
    ds, names = digits
    assert names == DIGITS
    assert {s: len(p) for s, p in ds.items()} == {"train": 1293, "validation": 144, "test": 360}
    assert ds["train"].column_names == ["idx", "image", "label"]
    first = ds["test"][0]["image"]
    assert (first.mode, first.size) == ("L", (8, 8))
    # Stratified carving: every digit is in every split.
    assert all(set(p["label"]) == set(range(10)) for p in ds.values())
    report = data_report(ds, names, None, train_test_overlap(ds))
    assert (report["image_height"], report["image_width"], report["image_channels"]) == (8, 8, 1)
    assert report["test_rows_also_in_train"] < 10


def test_hub_mnist_source_goes_through_load_dataset(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    # The shape of ylecun/mnist on the Hub: train and test, 28x28 grayscale, ClassLabel digits.
    fake = datasets.DatasetDict(train=image_split(120, 28), test=image_split(20, 28, seed=1))
    with mock.patch("datasets.load_dataset", return_value=fake) as load:
        ds, names = prepare_dataset(config("data", source="hub:ylecun/mnist"), seed=0, column="image")
    load.assert_called_once_with("ylecun/mnist")
    assert names == DIGITS
    assert len(ds["test"]) == 20 and len(ds["train"]) + len(ds["validation"]) == 120
    assert ds["train"][0]["image"].size == (28, 28)


def test_images_are_given_one_mode():
    mixed = [im if i % 2 else im.convert("RGB") for i, im in enumerate(images(100))]
    mixed[0] = mixed[0].convert("L")
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=DIGITS)})
    source = datasets.Dataset.from_dict({"image": mixed, "label": [i % 10 for i in range(100)]},
                                        features=features)
    with mock.patch("pipeline.data.load_source", return_value=(datasets.DatasetDict(train=source), {})):
        ds, _ = prepare_dataset(config("data", source="x", test_fraction=0.34, validation_fraction=0.2),
                                seed=0, column="image")
    assert {im.mode for p in ds.values() for im in p["image"]} == {"L"}


def test_missing_image_column_names_the_key():
    with mock.patch("pipeline.data.load_source",
                    return_value=(datasets.DatasetDict(train=image_split(20).rename_column("image", "img")), {})):
        with pytest.raises(UserError, match="has no column 'image'.*set data.image_column"):
            prepare_dataset(config("data", source="x"), seed=0, column="image")


def mlp_parameters(inputs: int, hidden: list[int], labels: int = 10) -> int:
    sizes = [inputs, *hidden, labels]
    return sum(a * b + b for a, b in zip(sizes, sizes[1:]))


def test_mlp_layer_sizes_are_params():
    train = image_split(10, 28)
    # Hinton et al. 2015's MNIST nets are one params change apart.
    for hidden in ([1200, 1200], [800, 800]):
        cfg = config("student", init="config", model="mlp", config_overrides={"hidden_sizes": hidden})
        student = build_student(cfg, DIGITS, None, IMAGE, train)
        assert count_parameters(student) == mlp_parameters(784, hidden)
        assert student(pixel_values=torch.zeros(2, 1, 28, 28)).logits.shape == (2, 10)


def test_cnn_teacher_takes_its_input_shape_from_the_data():
    train = image_split(10, 8)
    teacher = build_teacher(config("teacher", model="cnn", config_overrides={"channels": [8, 16]}),
                            DIGITS, IMAGE, train)
    assert teacher.config.image_size == [8, 8] and teacher.config.num_channels == 1
    out = teacher(pixel_values=torch.zeros(3, 1, 8, 8), labels=torch.tensor([0, 1, 2]))
    assert out.logits.shape == (3, 10) and out.loss.ndim == 0
    assert teacher.config.id2label[3] == "3"


def test_unknown_architecture_key_is_a_clear_error():
    with pytest.raises(UserError, match=r"unknown keys \['hidden'\]; it takes hidden_sizes"):
        build_student(config("student", init="config", model="mlp", config_overrides={"hidden": [8]}),
                      DIGITS, None, IMAGE, image_split(10))


def test_builtin_processor_standardises_with_train_statistics():
    train = image_split(50)
    processor = builtin_processor(train)
    pixels = IMAGE.batch(processor, train["image"], 0)["pixel_values"]
    assert pixels.shape == (50, 1, 8, 8)
    assert abs(float(pixels.mean())) < 0.01 and abs(float(pixels.std()) - 1) < 0.01


def test_saved_builtin_model_loads_in_transformers_pipeline(tmp_path):
    train = image_split(20)
    model = build_student(config("student", init="config", model="mlp",
                                        config_overrides={"hidden_sizes": [16]}), DIGITS, None, IMAGE, train)
    processor = load_processor("mlp", IMAGE, train)
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    assert (tmp_path / "vision_models.py").exists()  # published folders carry their architecture
    classifier = hf_pipeline("image-classification", model=str(tmp_path))
    top = classifier(train[0]["image"], top_k=3)
    assert len(top) == 3 and top[0]["label"] in DIGITS
    assert type(load_saved_processor(tmp_path)) is type(processor)


@pytest.fixture
def tiny_vit(tmp_path):
    """A transformers image model in a local folder, standing in for a Hub id (RGB, 3 classes)."""
    config = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                       image_size=16, patch_size=4, num_labels=3)
    ViTForImageClassification(config).save_pretrained(tmp_path / "vit")
    ViTImageProcessorPil(size={"height": 16, "width": 16}).save_pretrained(tmp_path / "vit")
    return str(tmp_path / "vit")


def test_transformers_image_model_as_teacher_and_layer_student(tiny_vit):
    teacher = build_teacher(config("teacher", model=tiny_vit), DIGITS, IMAGE, image_split(10))
    assert teacher.config.num_labels == 10  # its 3-class head replaced
    processor = load_processor(tiny_vit, IMAGE)
    # Grayscale data meets an RGB model: converted, resized, normalised.
    batch = IMAGE.batch(processor, images(4), 0)
    assert batch["pixel_values"].shape == (4, 3, 16, 16)
    assert teacher(**batch).logits.shape == (4, 10)
    student = student_from_teacher(teacher, [1], IMAGE)
    assert student.config.num_hidden_layers == 1 and student(**batch).logits.shape == (4, 10)


def test_layer_copy_from_a_cnn_is_a_clear_error():
    teacher = build_teacher(config("teacher", model="cnn"), DIGITS, IMAGE, image_split(10))
    with pytest.raises(UserError, match="has none; use student.init: config"):
        student_from_teacher(teacher, [0], IMAGE)


IMAGE_PARAMS = yaml.safe_load((ROOT / "configs" / "digits.yaml").read_text())


def changed(raw: dict, **changes) -> dict:
    raw = yaml.safe_load(yaml.safe_dump(raw))
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = raw
        for p in parents:
            node = node[p]
        node[last] = value
    return raw


@pytest.mark.parametrize("changes,message", [
    ({"task": "text-classification"}, "teacher.model 'cnn' is an image model; set task: image-classification"),
    ({"teacher__model": "minilm-l6"}, "teacher.model 'minilm-l6' is a text model"),
    ({"student__init": "teacher_layers", "student__layers": [0]},
     "a 'cnn' teacher has none; use student.init: config"),
    ({"teacher__finetune": False}, "teacher.finetune must be true"),
    ({"student__init": "pretrained"}, "student.model 'mlp' has no pretrained weights"),
    ({"task": "audio-classification"}, "'task' = 'audio-classification'"),
    ({"student__freeze_word_embeddings": True, "student__init": "pretrained",
      "student__model": "google/vit-base-patch16-224"},
     "student.freeze_word_embeddings applies to text models"),
    ({"soft_targets__augment__copies": 2, "soft_targets__augment__shift": 0},
     "soft_targets.augment.shift 0 would copy them unchanged"),
    ({"teacher__jitter": 2, "teacher__finetune": False, "teacher__model": "google/vit-base-patch16-224",
      "teacher__config_overrides": None}, "teacher.finetune false trains nothing; set teacher.jitter: 0"),
])
def test_models_that_do_not_fit_the_task(changes, message):
    with pytest.raises(UserError, match=message):
        parse_params(changed(IMAGE_PARAMS, **changes))


@pytest.mark.parametrize("name", ["digits.yaml", "mnist-hinton.yaml", "mnist-cnn.yaml"])
def test_shipped_image_params_are_valid(name):
    params = load_params(ROOT / "configs" / name)
    assert params.task == "image-classification" and params.student.model == "mlp"
