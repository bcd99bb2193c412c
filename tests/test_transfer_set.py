"""The transfer set: edited copies of training queries, the same for the same seed, and rows
without a label joined after the labelled training split."""

import numpy as np
import pytest
from datasets import ClassLabel, Dataset, Features, Value, load_from_disk

from pipeline import augment, soft_targets
from pipeline.soft_targets import NO_LABEL, TEACHER_LOGITS

QUERIES = ["what is my checking balance", "send twenty dollars to sam", "hi"]


def test_copies_are_seeded_and_edited():
    a = augment.copies(QUERIES, 3, 7, 0.2, 0.2, 0.2, "[MASK]")
    assert a == augment.copies(QUERIES, 3, 7, 0.2, 0.2, 0.2, "[MASK]")
    assert a != augment.copies(QUERIES, 3, 8, 0.2, 0.2, 0.2, "[MASK]")
    assert a and not set(a) & set(QUERIES)  # unchanged copies add nothing and are left out
    assert len(a) <= 3 * len(QUERIES)


def test_no_edit_no_copies():
    assert augment.copies(QUERIES, 2, 7, 0.0, 0.0, 0.0, "[MASK]") == []


def test_each_edit_by_itself():
    rng = np.random.default_rng(0)
    words = "a b c d e f g h".split()
    dropped = augment.augment(" ".join(words), rng, 0.5, 0.0, 0.0, "[MASK]").split()
    assert dropped and set(dropped) <= set(words) and dropped == sorted(dropped)
    masked = augment.augment(" ".join(words), rng, 0.0, 1.0, 0.0, "[MASK]").split()
    assert masked == ["[MASK]"] * len(words)
    swapped = augment.augment(" ".join(words), rng, 0.0, 0.0, 1.0, "[MASK]").split()
    assert sorted(swapped) == words and swapped != words
    # Dropping every word keeps one.
    assert len(augment.augment("one two", rng, 0.999, 0.0, 0.0, "[MASK]").split()) == 1


def test_transfer_rows_follow_the_training_split_without_labels():
    features = Features({"text": Value("string"), "label": ClassLabel(names=["a", "b"]),
                         "idx": Value("int64"), TEACHER_LOGITS: [Value("float32")]})
    train = Dataset.from_dict({"text": ["x", "y"], "label": [0, 1], "idx": [0, 1],
                               TEACHER_LOGITS: [[1.0, 0.0], [0.0, 1.0]]}, features=features)
    transfer = Dataset.from_dict({"text": ["x z", "w"], TEACHER_LOGITS: [[0.5, 0.5], [0.2, 0.8]]})
    joined = soft_targets.with_transfer(train, transfer)
    assert joined["text"] == ["x", "y", "x z", "w"]
    assert joined["label"] == [0, 1, NO_LABEL, NO_LABEL]
    assert joined["idx"] == [0, 1, -1, -2]
    assert joined[TEACHER_LOGITS][3] == pytest.approx([0.2, 0.8])


def test_joining_a_transfer_set_writes_nothing_beside_the_saved_splits(tmp_path):
    """The distill stage joins splits loaded from data/prepared and data/soft_targets, outputs
    of earlier stages: a cache file written beside them would change what DVC recorded."""
    features = Features({"text": Value("string"), "label": ClassLabel(names=["a", "b"]),
                         "idx": Value("int64"), TEACHER_LOGITS: [Value("float32")]})
    Dataset.from_dict({"text": ["x", "y"], "label": [0, 1], "idx": [0, 1],
                       TEACHER_LOGITS: [[1.0, 0.0], [0.0, 1.0]]},
                      features=features).save_to_disk(str(tmp_path / "train"))
    Dataset.from_dict({"text": ["x z"], TEACHER_LOGITS: [[0.5, 0.5]]}).save_to_disk(
        str(tmp_path / "transfer"))
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    joined = soft_targets.with_transfer(load_from_disk(str(tmp_path / "train")),
                                        load_from_disk(str(tmp_path / "transfer")))
    assert joined["label"] == [0, 1, NO_LABEL]
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
