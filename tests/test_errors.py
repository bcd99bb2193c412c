"""Bad input ends a stage with exit 2, one message naming the problem and the fix, no traceback,
and no output written."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.data import prepare_dataset
from pipeline.prepared import save_prepared

from conftest import LABELS, config, tiny_bert

ROOT = Path(__file__).parents[1]
DEFAULT = yaml.safe_load((ROOT / "params.yaml").read_text())
HEADER = "text,label\n"


def rows(split: str, labels=LABELS, n: int = 4) -> str:
    return HEADER + "".join(f"{split} query {i} about {lab},{lab}\n" for lab in labels for i in range(n))


def scratch(tmp_path: Path, changes: dict, files: dict[str, str | bytes] | None = None) -> Path:
    params = yaml.safe_load(yaml.safe_dump(DEFAULT))
    params["data"].update(source="data/in", watch="data/in")
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        node = params
        for p in parents:
            node = node[p]
        node[last] = value
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    folder = tmp_path / "data" / "in"
    folder.mkdir(parents=True)
    if files is None:
        files = {f"{s}.csv": rows(s) for s in ("train", "validation", "test")}
    for name, content in files.items():
        mode = "wb" if isinstance(content, bytes) else "w"
        with (folder / name).open(mode) as f:
            f.write(content)
    return tmp_path


def run_stage(repo: Path, stage: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", f"stages.{stage}"], cwd=repo, capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
    )


def assert_user_error(out: subprocess.CompletedProcess, message: str) -> None:
    assert out.returncode == 2, out.stderr[-2000:]
    assert "Traceback" not in out.stderr, out.stderr[-2000:]
    errors = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, out.stderr[-2000:]
    assert message in out.stderr, out.stderr[-2000:]


PARAM_CASES = {
    "unknown key": ({"teacher.train.learnig_rate": 0.1},
                    "unknown key 'teacher.train.learnig_rate'. Did you mean 'teacher.train.learning_rate'?"),
    "wrong type": ({"teacher.train.batch_size": "big"},
                   "'teacher.train.batch_size' = 'big': Input should be a valid integer"),
    "alpha above 1": ({"alpha": 1.5}, "'alpha' = 1.5: Input should be less than or equal to 1"),
    "alpha below 0": ({"alpha": -0.1}, "'alpha' = -0.1: Input should be greater than or equal to 0"),
    "temperature zero": ({"temperature": 0}, "'temperature' = 0: Input should be greater than 0"),
    "zero epochs": ({"student.train.epochs": 0}, "'student.train.epochs' = 0: Input should be greater than 0"),
    "negative batch size": ({"teacher.train.batch_size": -8},
                            "'teacher.train.batch_size' = -8: Input should be greater than 0"),
    "zero learning rate": ({"student.train.learning_rate": 0},
                           "'student.train.learning_rate' = 0: Input should be greater than 0"),
}


@pytest.mark.parametrize("case", PARAM_CASES)
def test_bad_params(tmp_path, case):
    changes, message = PARAM_CASES[case]
    repo = scratch(tmp_path, changes)
    assert_user_error(run_stage(repo, "prepare"), message)
    assert not (repo / "data" / "prepared").exists()


DATA_CASES = {
    "file does not exist": ({"data.source": "data/nope.csv", "data.watch": "data/nope.csv"}, None,
                            "data.source 'data/nope.csv' does not exist"),
    "watch is not the source": ({"data.watch": "LICENSE"}, None,
                                "data.watch 'LICENSE' must be data.source 'data/in'"),
    "sklearn set that downloads": ({"data.source": "sklearn:olivetti_faces"}, None,
                                   "only sklearn:digits ships inside scikit-learn"),
    "unreadable file": ({}, {"train.parquet": b"not parquet at all"}, "could not read"),
    "empty file": ({}, {"train.csv": "", "validation.csv": rows("validation"), "test.csv": rows("test")},
                   "is empty"),
    "missing column": ({"data.text_column": "utterance"}, None,
                       "has no column 'utterance' (it has text, label); set data.text_column"),
    "split with no rows": ({}, {"train.csv": rows("train"), "validation.csv": HEADER,
                                "test.csv": rows("test")}, "split 'validation' has no rows"),
    "test labels unseen in train": ({}, {"train.csv": rows("train", LABELS[:2]),
                                         "validation.csv": rows("validation"), "test.csv": rows("test")},
                                    "test labels never occur in train: transfer"),
    "hub while offline": ({"data.source": "hub:clinc_oos:plus"}, None,
                          "needs the Hugging Face Hub, but HF_HUB_OFFLINE is set"),
}


@pytest.mark.parametrize("case", DATA_CASES)
def test_bad_data(tmp_path, case):
    changes, files, message = DATA_CASES[case]
    repo = scratch(tmp_path, changes, files)
    assert_user_error(run_stage(repo, "prepare", HF_HUB_OFFLINE="1"), message)
    assert not (repo / "data" / "prepared").exists()


@pytest.fixture
def prepared(tmp_path):
    def make(changes):
        repo = scratch(tmp_path, changes)
        ds, names = prepare_dataset(config("data", source=str(repo / "data" / "in")), seed=0)
        save_prepared(ds, names, repo / "data" / "prepared")
        return repo
    return make


def test_finetuned_teacher_with_other_labels(prepared, tmp_path):
    other = tmp_path / "other-teacher"
    tiny_bert(layers=1, num_labels=2).save_pretrained(other)
    repo = prepared({"teacher.model": str(other), "teacher.finetune": False})
    assert_user_error(run_stage(repo, "teacher"), "was fine-tuned on other labels than the data has")
    assert not (repo / "models").exists()


def test_student_layers_the_teacher_lacks(prepared):
    # The baseline takes its layers from the teacher before fine-tuning: MiniLM-L6, 6 layers.
    repo = prepared({"student.layers": [0, 7]})
    assert_user_error(run_stage(repo, "baseline"),
                      "student.layers [0, 7] names layers [7] that the teacher does not have")
    assert not (repo / "models" / "trained" / "baseline").exists()


# Bad cells and badly shaped files: the message names the file, the line and the fix.
BAD_ROWS = {
    "empty label cell": ("train.csv", "a query,\n",
                         "data/in/train.csv line 14: the label (label) is empty; fill it in or remove the row."),
    "NaN label": ("train.csv", "a query,NaN\n",
                  "data/in/train.csv line 14: the label (label) is 'NaN', a missing-value marker; fill it in or remove the row."),
    "empty text cell": ("train.csv", ",balance\n",
                        "data/in/train.csv line 14: the text (text) is empty; fill it in or remove the row."),
    "not UTF-8": ("train.csv", "caf\xe9 au lait,balance\n".encode("latin-1"),
                  "data/in/train.csv line 14: byte 0xe9 is not UTF-8; save the file as UTF-8"),
    "ragged row": ("train.csv", "send 5, please,transfer\n",
                   "data/in/train.csv line 14: 3 fields where the header has 2 (text, label); quote a field"),
}


@pytest.mark.parametrize("case", BAD_ROWS)
def test_bad_rows_name_file_and_line(tmp_path, case):
    name, tail, message = BAD_ROWS[case]
    # The header and twelve good rows, then the bad one on line 14.
    content = rows("train") + tail if isinstance(tail, str) else rows("train").encode() + tail
    repo = scratch(tmp_path, {}, {name: content, "validation.csv": rows("validation"),
                                  "test.csv": rows("test")})
    assert_user_error(run_stage(repo, "prepare"), message)
    assert not (repo / "data" / "prepared").exists()


SHAPE_CASES = {
    "ragged first data row": ({}, {"train.csv": HEADER + "a, b,balance\n" + rows("train").removeprefix(HEADER),
                                   "validation.csv": rows("validation"), "test.csv": rows("test")},
                              "data/in/train.csv line 2: 3 fields where the header has 2"),
    "json list of pairs": ({}, {"train.json": json.dumps([["check my balance", "balance"]] * 12),
                                "validation.json": "[]", "test.json": "[]"},
                           "data/in/train.json record 1 is a list, not an object; a json file here holds a list of records"),
    "json lines of pairs": ({}, {"train.jsonl": '["check my balance", "balance"]\n',
                                 "validation.jsonl": "", "test.jsonl": ""},
                            "data/in/train.jsonl line 1 is a list, not an object"),
    "CLINC layout without test": (
        {"data.source": "data/in/clinc.json", "data.watch": "data/in/clinc.json"},
        {"clinc.json": json.dumps({"train": [["hi", "greet"]], "val": [["hey", "greet"]]})},
        "data/in/clinc.json looks like CLINC150's layout but has no 'test' key (it has train, val)"),
    "empty label in a single file": (
        {"data.source": "data/in/all.csv", "data.watch": "data/in/all.csv"},
        {"all.csv": rows("all") + "a query with no label,\n"},
        "data/in/all.csv line 14: the label (label) is empty; fill it in or remove the row."),
    "params.yaml not YAML": ({}, None, "params.yaml line 3, column 14: not valid YAML (mapping "
                                       "values are not allowed here); fix the syntax there."),
}


@pytest.mark.parametrize("case", SHAPE_CASES)
def test_badly_shaped_sources(tmp_path, case):
    changes, files, message = SHAPE_CASES[case]
    repo = scratch(tmp_path, changes, files)
    if case == "params.yaml not YAML":
        (repo / "params.yaml").write_text("seed: 42\nalpha: 0.5\n  temperature: 4.0\n")
    assert_user_error(run_stage(repo, "prepare"), message)
    assert not (repo / "data" / "prepared").exists()


def test_params_errors_are_one_line(tmp_path):
    repo = scratch(tmp_path, {"alpha": 2, "temperature": 0})
    out = run_stage(repo, "prepare")
    assert_user_error(out, "params.yaml is invalid: 'alpha' = 2: Input should be less than or "
                           "equal to 1. 'temperature' = 0: Input should be greater than 0.")
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_overrides_with_an_untrained_teacher_are_refused(tmp_path):
    repo = scratch(tmp_path, {"teacher.config_overrides": {"num_hidden_layers": 2},
                              "teacher.finetune": False})
    assert_user_error(run_stage(repo, "check"),
                      "teacher.config_overrides builds the teacher with random weights, and "
                      "teacher.finetune false would use it untrained")


def test_max_length_beyond_the_model_stops_before_any_work(tmp_path):
    repo = scratch(tmp_path, {"data.max_length": 1024})
    live = repo / "reports" / "live" / "teacher"
    live.mkdir(parents=True)
    (live / "metrics.json").write_text("{}")
    message = ("data.max_length 1024 is more than teacher.model 'minilm-l6' can take: it has "
               "512 positions. Set data.max_length to 512 or less.")
    assert_user_error(run_stage(repo, "check"), message)
    assert_user_error(run_stage(repo, "teacher"), message)
    assert (live / "metrics.json").read_text() == "{}"


def test_a_teacher_folder_that_is_not_a_model(tmp_path):
    not_a_model = tmp_path / "my-model"
    not_a_model.mkdir()
    (not_a_model / "notes.txt").write_text("weights to come")
    repo = scratch(tmp_path, {"teacher.model": str(not_a_model), "teacher.finetune": False})
    assert_user_error(run_stage(repo, "check"), f"teacher.model '{not_a_model}' is not a model (")


@pytest.fixture
def teacher_project(prepared):
    """A prepared project (params changed by `changes`) with a trained teacher folder (a tiny
    BERT and MiniLM's tokenizer)."""
    from transformers import AutoTokenizer

    from pipeline.models import packaged_path

    def make(changes):
        repo = prepared(changes)
        folder = repo / "models" / "trained" / "teacher"
        tiny_bert(layers=1).save_pretrained(folder)
        AutoTokenizer.from_pretrained(packaged_path("minilm-l6")).save_pretrained(folder)
        return repo
    return make


@pytest.fixture
def trained_teacher(teacher_project):
    return teacher_project({})


def test_soft_targets_refuse_an_ensemble_of_other_seeds(teacher_project):
    repo = teacher_project({"soft_targets.ensemble_seeds": [1, 2]})
    assert_user_error(run_stage(repo, "soft_targets"),
                      "models/trained/ensemble/members.json not found: the ensemble stage writes "
                      "it; run `dvc repro ensemble`")
    (repo / "models/trained/ensemble").mkdir()
    (repo / "models/trained/ensemble/members.json").write_text('{"seeds": [1]}')
    assert_user_error(run_stage(repo, "soft_targets"),
                      "models/trained/ensemble holds the teachers of seeds [1], but soft_targets."
                      "ensemble_seeds is [1, 2]; rebuild it with `dvc repro ensemble`.")
    assert not (repo / "data" / "soft_targets").exists()


def test_a_stage_run_before_the_stage_it_needs(trained_teacher):
    assert_user_error(run_stage(trained_teacher, "distill"),
                      "data/soft_targets not found: the soft_targets stage writes it; run "
                      "`dvc repro soft_targets` (or `dvc repro`) first.")
    shutil.rmtree(trained_teacher / "data" / "prepared")
    assert_user_error(run_stage(trained_teacher, "soft_targets"),
                      "data/prepared not found: the prepare stage writes it; run `dvc repro prepare`")


@pytest.mark.parametrize("damage", ["truncated weights", "cut config.json"])
def test_a_damaged_model_folder(trained_teacher, damage):
    folder = trained_teacher / "models" / "trained" / "teacher"
    victim = folder / ("model.safetensors" if damage == "truncated weights" else "config.json")
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    out = run_stage(trained_teacher, "soft_targets")
    assert_user_error(out, "models/trained/teacher is damaged (")
    assert ("rebuild it with `dvc repro --force teacher`, or restore it with "
            "`dvc checkout models/trained/teacher`.") in out.stderr
    assert not (trained_teacher / "data" / "soft_targets").exists()


def test_soft_targets_of_other_data_are_refused(trained_teacher, monkeypatch):
    """Same split sizes, other rows: a join on idx alone would train on the wrong logits."""
    from datasets import Dataset, DatasetDict

    from pipeline import soft_targets
    from pipeline.prepared import load_prepared

    repo = trained_teacher
    monkeypatch.chdir(repo)
    ds, names = load_prepared("data/prepared")
    soft = DatasetDict({s: Dataset.from_dict({"idx": ds[s]["idx"],
                                              soft_targets.TEACHER_LOGITS: [[0.0] * 3] * len(ds[s])})
                        for s in soft_targets.SPLITS})
    soft_targets.save(soft, repo / "data" / "soft_targets", soft_targets.provenance(ds, names))
    other = prepare_dataset(config("data", source=str(repo / "data" / "in")), seed=0)[0]
    other["train"] = other["train"].map(lambda r: {"text": r["text"] + " (edited)"})
    shutil.rmtree(repo / "data" / "prepared")
    save_prepared(other, names, repo / "data" / "prepared")
    assert_user_error(run_stage(repo, "distill"),
                      "data/soft_targets was computed from another prepared data than the "
                      "workspace has now; rebuild it with `dvc repro soft_targets`.")


def test_train_test_overlap_is_warned_with_examples(tmp_path):
    repo = scratch(tmp_path, {}, {"train.csv": rows("train"), "validation.csv": rows("validation"),
                                  "test.csv": rows("train")})
    out = run_stage(repo, "prepare")
    assert out.returncode == 0, out.stderr[-2000:]
    assert ("12 test rows also occur in train, so the test figures flatter every model; for "
            "example: 'train query 0 about balance'; 'train query 1 about balance'; "
            "'train query 2 about balance'") in out.stderr


@pytest.mark.parametrize("stage, message", [
    ("evaluate", "models/trained/teacher not found: the teacher stage writes it; run "
                 "`dvc repro teacher` (or `dvc repro`) first."),
    ("card", "reports/metrics.json not found: the evaluate stage writes it; run "
             "`dvc repro evaluate` (or `dvc repro`) first."),
])
def test_the_last_stages_run_before_their_inputs(prepared, stage, message):
    repo = prepared({})
    assert_user_error(run_stage(repo, stage), message)
