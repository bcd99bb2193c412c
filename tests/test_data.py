import gzip
import json
from unittest import mock

import datasets
import pandas as pd
import pytest
import yaml
from huggingface_hub.errors import HTTPError
from huggingface_hub.hf_api import DatasetInfo

from conftest import ROOT, config
from pipeline.data import data_report, prepare_dataset, train_test_overlap
from pipeline.errors import UserError

ROWS = [(f"query number {i} about {lab}", lab) for lab in ("balance", "oos", "transfer")
        for i in range(12)]


def frame(rows=ROWS, text="text", label="label"):
    return pd.DataFrame({text: [r[0] for r in rows], label: [r[1] for r in rows]})


def split_rows(split):
    return [(f"{split} {t}", lab) for t, lab in ROWS]


def prepare(source, **kw):
    return prepare_dataset(config("data", source=str(source), **kw), seed=0)


def check(ds, names):
    assert names == ["balance", "oos", "transfer"]
    assert set(ds) == {"train", "validation", "test"}
    for split in ds.values():
        assert split.column_names == ["idx", "text", "label"]
        assert split["idx"] == list(range(len(split)))
        assert set(split["label"]) == {0, 1, 2}


# pandas gzips a file whose name ends in .gz.
@pytest.mark.parametrize("ext", ["csv", "jsonl", "parquet", "json", "csv.gz", "jsonl.gz"])
def test_folder_of_split_files(tmp_path, ext):
    for split in ("train", "validation", "test"):
        df = frame(split_rows(split))
        path = tmp_path / f"{split}.{ext}"
        if ext.startswith("csv"):
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


def write(path, text):
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)


@pytest.mark.parametrize("name", ["data_oos_plus.json", "data_oos_plus.json.gz"])
def test_clinc_original_layout(tmp_path, name):
    layout = {
        "train": [[f"train q{i} {lab}", lab] for lab in ("balance", "transfer") for i in range(3)],
        "val": [["val q balance", "balance"], ["val q transfer", "transfer"]],
        "test": [["test q balance", "balance"], ["test q transfer", "transfer"]],
        "oos_train": [["oos train", "oos"]], "oos_val": [["oos val", "oos"]],
        "oos_test": [["oos test", "oos"], ["oos test 2", "oos"]],
    }
    path = tmp_path / name
    write(path, json.dumps(layout))
    ds, names = prepare(path)
    check(ds, names)
    assert [len(ds[s]) for s in ("train", "validation", "test")] == [7, 3, 4]
    assert ds["test"][-1]["text"] == "oos test 2"


def test_single_gzipped_json_records_file(tmp_path):
    path = tmp_path / "all.json.gz"
    write(path, frame(ROWS * 2).assign(text=lambda d: [f"{t} {i}" for i, t in enumerate(d.text)])
          .to_json(orient="records"))
    ds, names = prepare(path)
    check(ds, names)
    assert sum(len(s) for s in ds.values()) == 2 * len(ROWS)


def test_json_gz_that_is_not_gzip(tmp_path):
    path = tmp_path / "data_oos_plus.json.gz"
    path.write_text("{}")
    with pytest.raises(UserError, match="not a complete gzip file"):
        prepare(path)


def test_gzipped_parquet_is_refused(tmp_path):
    path = tmp_path / "all.parquet.gz"
    path.write_bytes(gzip.compress(b"PAR1"))
    with pytest.raises(UserError, match=r"unsupported file type.*\.csv, \.json, \.jsonl also gzip"):
        prepare(path)


@pytest.mark.parametrize(("labels", "expected"), [
    ([10, 2, 1, 0], ["0", "1", "2", "10"]),
    (["10", "2", "1", "0"], ["0", "1", "2", "10"]),
    ([-1, 3, 12], ["-1", "3", "12"]),
    (["10", "2", "b", "a"], ["10", "2", "a", "b"]),
])
def test_label_order_numeric_when_labels_are_integers(tmp_path, labels, expected):
    rows = [(f"query {i} for {lab}", lab) for lab in labels for i in range(4)]
    frame(rows).to_csv(tmp_path / "train.csv", index=False)
    frame(rows).to_csv(tmp_path / "test.csv", index=False)
    ds, names = prepare(tmp_path, validation_fraction=0.25)
    assert names == expected
    row = ds["test"][0]
    assert row["text"].endswith(f"for {names[row['label']]}")


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


def hub_data():
    return datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"text": ["a b", "c d", "e f", "g h"], "intent": [0, 1, 0, 1]}),
        "validation": datasets.Dataset.from_dict({"text": ["i j", "k l"], "intent": [0, 1]}),
        "test": datasets.Dataset.from_dict({"text": ["m n", "o p"], "intent": [1, 0]}),
    })


@pytest.mark.parametrize(("source", "call"), [
    ("hub:clinc_oos:plus", mock.call("clinc_oos", "plus")),
    ("hub:clinc_oos:plus@abc123", mock.call("clinc_oos", "plus", revision="abc123")),
    ("hub:clinc/clinc_oos@v1.0", mock.call("clinc/clinc_oos", revision="v1.0")),
])
def test_hub_source_calls_load_dataset(monkeypatch, source, call):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with mock.patch("datasets.load_dataset", return_value=hub_data()) as load:
        ds, names = prepare(source, label_column="intent")
    assert load.call_args_list == [call]
    assert names == ["0", "1"] and len(ds["train"]) == 4


@pytest.mark.parametrize("source", ["hub:", "hub:a:b:c", "hub:clinc_oos:", "hub:clinc_oos@"])
def test_malformed_hub_source(monkeypatch, source):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with mock.patch("datasets.load_dataset") as load, pytest.raises(UserError, match="@REVISION"):
        prepare(source)
    load.assert_not_called()


SHA = "0123456789abcdef0123456789abcdef01234567"


def run_prepare_stage(tmp_path, monkeypatch, source):
    from stages.prepare import main

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"].update(source=source, label_column="intent", watch="pipeline/data.py")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    main()
    return json.loads((tmp_path / "reports" / "data.json").read_text())


def test_prepare_records_the_hub_commit_it_loaded(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with mock.patch("huggingface_hub.HfApi.dataset_info",
                    return_value=DatasetInfo(id="clinc_oos", sha=SHA)) as info, \
         mock.patch("datasets.load_dataset", return_value=hub_data()) as load:
        report = run_prepare_stage(tmp_path, monkeypatch, "hub:clinc_oos:plus@v2")
    info.assert_called_once_with("clinc_oos", revision="v2")
    # The commit looked up, not the branch or tag named: the data recorded is the data loaded.
    load.assert_called_once_with("clinc_oos", "plus", revision=SHA)
    assert report["source_revision"] == SHA and report["rows"]["train"] == 4


def test_unreachable_hub_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with mock.patch("huggingface_hub.HfApi.dataset_info",
                    side_effect=HTTPError("[Errno -2] Name or service not known")), \
         mock.patch("datasets.load_dataset") as load, pytest.raises(SystemExit) as exit_:
        run_prepare_stage(tmp_path, monkeypatch, "hub:clinc_oos:plus")
    assert exit_.value.code == 2
    assert capsys.readouterr().err.startswith("error: could not look up 'hub:clinc_oos:plus'")
    load.assert_not_called()


def test_hub_source_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with mock.patch("datasets.load_dataset") as load, pytest.raises(UserError, match="HF_HUB_OFFLINE"):
        prepare("hub:clinc_oos:plus")
    load.assert_not_called()


def test_prepare_stage_offline_asks_nothing_of_the_hub(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with mock.patch("huggingface_hub.HfApi.dataset_info") as info, \
         mock.patch("datasets.load_dataset") as load, pytest.raises(SystemExit):
        run_prepare_stage(tmp_path, monkeypatch, "hub:clinc_oos:plus@abc123")
    assert "HF_HUB_OFFLINE is set" in capsys.readouterr().err
    info.assert_not_called()
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
    overlap = train_test_overlap(ds)
    report = data_report(ds, names, "oos", overlap)
    assert overlap == [0, 1, 2, 3, 4]
    assert report["rows"] == {"train": 36, "validation": 36, "test": 5}
    assert report["test_rows_also_in_train"] == 5
    assert report["has_oos_label"] is True


def test_long_texts_emoji_and_words_pandas_calls_missing_are_kept(tmp_path):
    long = " ".join(["word"] * 5000)
    rows = [(long, "balance"), ("send 🙂 to mom 💸", "transfer"), ("None", "oos"), ("NA", "oos"),
            ("null", "balance"), ("ça coûte combien ?", "transfer")] * 6
    frame(rows).to_csv(tmp_path / "all.csv", index=False)
    ds, names = prepare(tmp_path / "all.csv")
    texts = {t for split in ds.values() for t in split["text"]}
    assert texts == {r[0] for r in rows}
    assert names == ["balance", "oos", "transfer"]


def test_a_label_pandas_would_call_missing_is_refused_in_json_too(tmp_path):
    frame(ROWS + [("what is this", None)]).to_json(tmp_path / "all.jsonl", orient="records", lines=True)
    with pytest.raises(UserError, match=r"all.jsonl line 37: the label \(label\) is empty"):
        prepare(tmp_path / "all.jsonl")
