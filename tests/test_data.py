import json
from unittest import mock

import datasets
import pandas as pd
import pytest

from pipeline.config import DataConfig
from pipeline.data import data_report, prepare_dataset
from pipeline.errors import UserError

ROWS = [(f"query number {i} about {lab}", lab) for lab in ("balance", "oos", "transfer")
        for i in range(12)]


def frame(rows=ROWS, text="text", label="label"):
    return pd.DataFrame({text: [r[0] for r in rows], label: [r[1] for r in rows]})


def split_rows(split):
    return [(f"{split} {t}", lab) for t, lab in ROWS]


def prepare(source, **kw):
    return prepare_dataset(DataConfig(source=str(source), **kw), seed=0)


def check(ds, names):
    assert names == ["balance", "oos", "transfer"]
    assert set(ds) == {"train", "validation", "test"}
    for split in ds.values():
        assert split.column_names == ["idx", "text", "label"]
        assert split["idx"] == list(range(len(split)))
        assert set(split["label"]) == {0, 1, 2}


@pytest.mark.parametrize("ext", ["csv", "jsonl", "parquet", "json"])
def test_folder_of_split_files(tmp_path, ext):
    for split in ("train", "validation", "test"):
        df = frame(split_rows(split))
        path = tmp_path / f"{split}.{ext}"
        if ext == "csv":
            df.to_csv(path, index=False)
        elif ext == "parquet":
            df.to_parquet(path)
        else:
            df.to_json(path, orient="records", lines=True)
    ds, names = prepare(tmp_path)
    check(ds, names)
    assert len(ds["test"]) == len(ROWS)


def test_val_and_dev_names_are_validation(tmp_path):
    frame(split_rows("train")).to_csv(tmp_path / "train.csv", index=False)
    frame(split_rows("dev")).to_csv(tmp_path / "dev.csv", index=False)
    ds, _ = prepare(tmp_path)
    assert ds["validation"][0]["text"].startswith("dev ")


def test_single_file_is_split_stratified(tmp_path):
    path = tmp_path / "all.csv"
    frame(ROWS * 3).assign(text=lambda d: [f"{t} {i}" for i, t in enumerate(d.text)]).to_csv(path, index=False)
    ds, names = prepare(path, test_fraction=0.2, validation_fraction=0.1)
    check(ds, names)
    assert sum(len(s) for s in ds.values()) == 3 * len(ROWS)
    assert len(ds["test"]) == pytest.approx(0.2 * 3 * len(ROWS), abs=3)
    again, _ = prepare(path, test_fraction=0.2, validation_fraction=0.1)
    assert again["test"]["text"] == ds["test"]["text"], "splits must be seeded"


def test_custom_column_names(tmp_path):
    frame(text="utterance", label="intent").to_csv(tmp_path / "data.csv", index=False)
    ds, names = prepare(tmp_path / "data.csv", text_column="utterance", label_column="intent")
    check(ds, names)


def test_missing_column_lists_columns(tmp_path):
    frame(text="utterance").to_csv(tmp_path / "data.csv", index=False)
    with pytest.raises(UserError, match=r"no column 'text' \(it has utterance, label\)"):
        prepare(tmp_path / "data.csv")


def test_clinc_original_layout(tmp_path):
    layout = {
        "train": [[f"train q{i} {lab}", lab] for lab in ("balance", "transfer") for i in range(3)],
        "val": [["val q balance", "balance"], ["val q transfer", "transfer"]],
        "test": [["test q balance", "balance"], ["test q transfer", "transfer"]],
        "oos_train": [["oos train", "oos"]], "oos_val": [["oos val", "oos"]],
        "oos_test": [["oos test", "oos"], ["oos test 2", "oos"]],
    }
    path = tmp_path / "data_oos_plus.json"
    path.write_text(json.dumps(layout))
    ds, names = prepare(path)
    check(ds, names)
    assert [len(ds[s]) for s in ("train", "validation", "test")] == [7, 3, 4]
    assert ds["test"][-1]["text"] == "oos test 2"


def test_save_to_disk_folder_with_classlabel(tmp_path):
    feature = datasets.ClassLabel(names=["transfer", "balance", "oos"])
    parts = {}
    for split in ("train", "validation", "test"):
        rows = split_rows(split)
        parts[split] = datasets.Dataset.from_dict(
            {"text": [r[0] for r in rows], "label": [feature.str2int(r[1]) for r in rows]},
            features=datasets.Features({"text": datasets.Value("string"), "label": feature}),
        )
    datasets.DatasetDict(parts).save_to_disk(str(tmp_path / "saved"))
    ds, names = prepare(tmp_path / "saved")
    # The source's own label order is kept when it has one.
    assert names == ["transfer", "balance", "oos"]
    assert ds["train"].features["label"].names == names
    row = ds["train"][0]
    assert names[row["label"]] in row["text"]


def test_hub_source_calls_load_dataset(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    fake = datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"text": ["a b", "c d", "e f", "g h"], "intent": [0, 1, 0, 1]}),
        "validation": datasets.Dataset.from_dict({"text": ["i j", "k l"], "intent": [0, 1]}),
        "test": datasets.Dataset.from_dict({"text": ["m n", "o p"], "intent": [1, 0]}),
    })
    with mock.patch("datasets.load_dataset", return_value=fake) as load:
        ds, names = prepare("hub:clinc_oos:plus", label_column="intent")
    load.assert_called_once_with("clinc_oos", "plus")
    assert names == ["0", "1"] and len(ds["train"]) == 4


def test_hub_source_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with mock.patch("datasets.load_dataset") as load, pytest.raises(UserError, match="HF_HUB_OFFLINE"):
        prepare("hub:clinc_oos:plus")
    load.assert_not_called()


def test_missing_path(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        prepare(tmp_path / "nope.csv")


def test_test_labels_unseen_in_train(tmp_path):
    frame(split_rows("train")[:24]).to_csv(tmp_path / "train.csv", index=False)
    frame(split_rows("validation")).to_csv(tmp_path / "validation.csv", index=False)
    frame(split_rows("test")).to_csv(tmp_path / "test.csv", index=False)
    with pytest.raises(UserError, match="test labels never occur in train: transfer"):
        prepare(tmp_path)


def test_data_report_counts_overlap(tmp_path):
    frame(split_rows("train")).to_csv(tmp_path / "train.csv", index=False)
    frame(split_rows("validation")).to_csv(tmp_path / "validation.csv", index=False)
    frame(split_rows("train")[:5]).to_csv(tmp_path / "test.csv", index=False)
    ds, names = prepare(tmp_path)
    report = data_report(ds, names, "oos")
    assert report["rows"] == {"train": 36, "validation": 36, "test": 5}
    assert report["test_rows_also_in_train"] == 5
    assert report["has_oos_label"] is True
