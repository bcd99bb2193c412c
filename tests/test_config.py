from pathlib import Path

import pytest
import yaml

from pipeline.config import load_params, parse_params
from pipeline.errors import UserError

DEFAULT = yaml.safe_load((Path(__file__).parents[1] / "params.yaml").read_text())


def with_change(path: str, value):
    raw = yaml.safe_load(yaml.safe_dump(DEFAULT))
    *parents, last = path.split(".")
    node = raw
    for p in parents:
        node = node[p]
    node[last] = value
    return raw


def test_default_params_are_valid():
    params = parse_params(DEFAULT)
    assert 0 <= params.alpha <= 1 and params.temperature > 0


@pytest.mark.parametrize("name", ["clinc150.yaml", "clinc150-book.yaml"])
def test_shipped_task_params_are_valid(name):
    params = load_params(Path(__file__).parents[1] / "configs" / name)
    assert params.data.oos_label == "oos"


def test_unknown_key_suggests_the_close_one():
    raw = with_change("teacher.train.learnig_rate", 0.1)
    with pytest.raises(UserError, match=r"unknown key 'teacher.train.learnig_rate'.*"
                                         r"Did you mean 'teacher.train.learning_rate'"):
        parse_params(raw)


@pytest.mark.parametrize("path,value,message", [
    ("alpha", 1.5, r"'alpha' = 1.5: Input should be less than or equal to 1"),
    ("temperature", 0, r"'temperature' = 0: Input should be greater than 0"),
    ("student.train.epochs", -1, r"'student.train.epochs' = -1"),
    ("teacher.train.batch_size", "big", r"'teacher.train.batch_size' = 'big'"),
    ("student.freeze_word_embeddings", "yes please",
     r"'student.freeze_word_embeddings' = 'yes please'"),
    ("student.from_teacher", "distilled",
     r"'student.from_teacher' = 'distilled': Input should be 'finetuned' or 'pretrained'"),
    ("soft_targets.augment.copies", -1, r"'soft_targets.augment.copies' = -1"),
    ("soft_targets.unlabelled", "../queries.txt",
     r"soft_targets.unlabelled '../queries.txt' must be a .txt file .* under data/transfer/"),
    ("soft_targets.unlabelled", "data/transfer/missing.txt",
     r"soft_targets.unlabelled 'data/transfer/missing.txt' does not exist"),
    ("soft_targets.ensemble_seeds", [1, 2, 1],
     r"soft_targets.ensemble_seeds \[1, 2, 1\] repeats a seed"),
    ("soft_targets.ensemble_seeds", [1, 42],
     r"soft_targets.ensemble_seeds has the top-level seed 42, the teacher's own"),
    ("soft_targets.ensemble_seeds", "1,2", r"'soft_targets.ensemble_seeds' = '1,2'"),
    ("teacher.jitter", -1, r"'teacher.jitter' = -1: Input should be greater than or equal to 0"),
    ("teacher.jitter", 2, r"teacher.jitter 2 shifts training images; set it to 0 for task "
                          r"text-classification"),
    ("export.embeddings", "int2", r"'export.embeddings' = 'int2': Input should be 'int8' or 'int4'"),
    ("export.embeddings_block_size", 48,
     r"'export.embeddings_block_size' = 48: .*must be a power of two"),
])
def test_bad_values_name_key_and_value(path, value, message):
    with pytest.raises(UserError, match=message):
        parse_params(with_change(path, value))


def test_missing_params_file(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_params(tmp_path / "params.yaml")


def test_relative_mlflow_db_is_anchored_at_the_project_root(tmp_path):
    from pipeline.tracking import anchored_uri

    queued = tmp_path / ".dvc" / "tmp" / "exps" / "tmpab12"
    queued.mkdir(parents=True)
    assert anchored_uri("sqlite:///mlflow.db", queued) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    assert anchored_uri("sqlite:///mlflow.db", tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    assert anchored_uri("sqlite:////abs/m.db", queued) == "sqlite:////abs/m.db"
    assert anchored_uri("http://tracking:5000", queued) == "http://tracking:5000"


def test_frozen_word_embeddings_need_trained_ones():
    raw = with_change("student.init", "config")
    raw["student"]["freeze_word_embeddings"] = True
    with pytest.raises(UserError, match="would freeze random word embeddings.*teacher_layers"):
        parse_params(raw)
