"""Bad input ends a stage with exit 2, one message naming the problem and the fix, no traceback,
and no output written."""

import os
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
