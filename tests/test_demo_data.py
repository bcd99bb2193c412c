"""The demo data set shipped in data/demo: counts, disjoint splits, every label everywhere."""

import difflib
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from conftest import config
from pipeline.data import prepare_dataset

DEMO = Path(__file__).parents[1] / "data" / "demo"
SPLITS = ("train", "validation", "test")
PER_INTENT = {"train": 50, "validation": 15, "test": 25}
OOS = {"train": 100, "validation": 30, "test": 100}


@pytest.fixture(scope="module")
def splits():
    return {s: pd.read_csv(DEMO / f"{s}.csv") for s in SPLITS}


def norm(text: str) -> str:
    return " ".join(text.lower().split())


def test_counts(splits):
    intents = sorted(set(splits["train"].label) - {"oos"})
    assert len(intents) == 20
    for split, frame in splits.items():
        counts = Counter(frame.label)
        assert counts.pop("oos") == OOS[split]
        assert set(counts.values()) == {PER_INTENT[split]}, (split, counts)


def test_every_label_in_every_split(splits):
    labels = [set(f.label) for f in splits.values()]
    assert labels[0] == labels[1] == labels[2]


def test_no_query_in_two_splits_or_twice(splits):
    seen = {}
    for split, frame in splits.items():
        for text in frame.text:
            key = norm(text)
            assert key not in seen, f"{text!r} is in {seen.get(key)} and {split}"
            seen[key] = split


def test_query_lengths(splits):
    for frame in splits.values():
        words = frame.text.str.split().str.len()
        assert words.min() >= 2 and words.max() <= 25


def test_no_test_query_is_a_trivial_edit_of_a_train_query(splits):
    train = splits["train"]
    for label, group in splits["test"].groupby("label"):
        candidates = [norm(t) for t in train[train.label == label].text]
        for text in group.text:
            best = max(difflib.SequenceMatcher(None, norm(text), c).ratio() for c in candidates)
            assert best < 0.85, f"test query {text!r} is close to a train query of {label}"


def test_prepare_reads_it_as_user_data():
    ds, names = prepare_dataset(config("data", source=str(DEMO)), seed=0)
    assert len(names) == 21 and "oos" in names
    assert [len(ds[s]) for s in SPLITS] == [1100, 330, 600]
