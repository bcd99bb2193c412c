import copy
from pathlib import Path

import pytest
import yaml
from conftest import tiny_bert
from huggingface_hub import ModelCard
from transformers import AutoConfig

from pipeline.card import CardInputs, render, store_threshold
from pipeline.config import parse_params

PARAMS = parse_params(yaml.safe_load((Path(__file__).parents[1] / "params.yaml").read_text()))
NAMES = ["balance", "oos", "transfer"]


def role_metrics(acc: float, params: int) -> dict:
    return {"accuracy": acc, "macro_f1": acc - 0.01, "ece": 0.05, "in_scope_accuracy": acc + 0.01,
            "oos_recall": 0.8, "oos_precision": 0.9, "parameters": params, "size_mb": params / 2**18,
            "validation_accuracy": acc + 0.02, "oos_threshold": 0.4321,
            "thresholded": {"accuracy": acc + 0.03, "macro_f1": acc + 0.02,
                            "in_scope_accuracy": acc - 0.005, "oos_recall": 0.912,
                            "oos_precision": 0.7}}


METRICS = {
    "teacher": role_metrics(0.93, 22_000_000),
    "baseline": role_metrics(0.89, 17_000_000),
    "student": role_metrics(0.9123, 17_000_000),
    "student_vs_teacher": {"agreement": 0.95, "accuracy_ratio": 0.981, "parameter_ratio": 0.77,
                           "size_ratio": 0.77},
    "student_vs_baseline": {"accuracy_gain": 0.0223, "only_student_right": 31,
                            "only_baseline_right": 12, "mcnemar_p": 0.0053},
    "speed": {"device": "cpu (test)", "student_speedup": 1.9,
              **{r: {"latency_ms_median": 5.0, "latency_ms_p95": 6.0, "throughput_per_s": 900.0}
                 for r in ("teacher", "baseline", "student")}},
}
MINILM = {"hub_id": "sentence-transformers/all-MiniLM-L6-v2",
          "revision": "1110a243fdf4706b3f48f1d95db1a4f5529b4d41"}
SOURCES = {"teacher": MINILM, "student": MINILM}
DATA = {"rows": {"train": 1100, "validation": 330, "test": 600}}
HISTORY = [{"epoch": e, "step": 35 * e, "training_loss": 1.0 / e, "validation_cross_entropy": 0.5 / e,
            "validation_distillation_loss": 0.75 / e,
            "validation_accuracy": 0.8 + e / 100, "validation_macro_f1": 0.79 + e / 100}
           for e in (1, 2)]


def card_for(metrics=METRICS, role="student", params=PARAMS):
    inputs = CardInputs(params, metrics, DATA, HISTORY, NAMES, 'what is my "balance"', SOURCES)
    return str(render(inputs, role))


def test_metadata_round_trips_through_model_card_data():
    card = ModelCard(card_for())
    data = card.data
    assert data.library_name == "transformers"
    assert data.pipeline_tag == "text-classification"
    assert {"knowledge-distillation", "generated_from_trainer"} <= set(data.tags)
    assert data.base_model == "sentence-transformers/all-MiniLM-L6-v2"
    results = {r.metric_name: r.metric_value for r in data.eval_results}
    assert results["accuracy"] == 0.9123 and results["oos_recall"] == 0.8
    assert all(r.dataset_split == "test" for r in data.eval_results)
    again = ModelCard(str(card))
    assert again.data.to_dict() == data.to_dict()


def test_a_changed_metric_changes_the_card():
    before = card_for()
    changed = copy.deepcopy(METRICS)
    changed["student"]["accuracy"] = 0.8765
    after = card_for(changed)
    assert "0.9123" in before and "0.9123" not in after
    assert "0.8765" in after
    assert ModelCard(after).data.eval_results[0].metric_value == 0.8765


def test_body_has_the_sections_users_look_for():
    card = card_for()
    for heading in ("## How it was made", "## Intended uses and limitations", "## How to use",
                    "## Training procedure", "### Training results", "## Evaluation",
                    "## Framework versions", "## How to reproduce"):
        assert heading in card
    assert "alpha = 0.5" in card and "temperature T = 4.0" in card
    assert "| 2 | 70 | 0.5000 | 0.3750 | 0.2500 | 0.8200 | 0.8100 |" in card
    assert 'pipeline("text-classification"' in card


def test_validation_loss_is_cross_entropy_and_the_objective_is_named():
    student, teacher = card_for(), card_for(role="teacher")
    assert "| training loss (distillation) | validation distillation loss | validation " \
           "cross-entropy |" in student
    assert "| training loss | validation cross-entropy |" in teacher
    assert "| 2 | 70 | 0.5000 | 0.2500 | 0.8200 | 0.8100 |" in teacher


def test_base_weights_are_named_with_their_hub_commit():
    card = card_for()
    assert ModelCard(card).data.base_model == "sentence-transformers/all-MiniLM-L6-v2"
    assert "at commit `1110a243fdf4706b3f48f1d95db1a4f5529b4d41`" in card
    assert "Teacher**: `sentence-transformers/all-MiniLM-L6-v2`" in card  # not the alias


def test_how_to_reproduce_has_no_placeholder():
    card = card_for()
    assert "<" not in card.split("## How to reproduce")[1]
    assert "git clone" not in card  # no repository set
    repository = "https://example.com/team/distill-pipeline.git"
    params = PARAMS.model_copy(update={"card": PARAMS.card.model_copy(
        update={"repository": repository})})
    assert f"git clone {repository} distill-pipeline" in card_for(params=params)


def test_packaged_teacher_weights_are_the_hub_files_the_card_names():
    import hashlib

    from pipeline.models import packaged_path
    from pipeline.registry import TEXT_ALIASES

    for alias, spec in TEXT_ALIASES.items():
        weights = (packaged_path(alias) / "model.safetensors").read_bytes()
        assert hashlib.sha256(weights).hexdigest() == spec.weights_sha256, alias


@pytest.mark.parametrize("frozen", [True, False])
def test_student_card_says_whether_word_embeddings_were_frozen(frozen):
    student = PARAMS.student.model_copy(update={"freeze_word_embeddings": frozen})
    params = PARAMS.model_copy(update={"student": student})
    row = "| word embeddings | frozen (kept as initialised) |"
    assert (row in card_for(params=params)) is frozen
    assert row not in card_for(params=params, role="teacher")


def test_teacher_card_is_its_own():
    card = ModelCard(card_for(role="teacher"))
    assert card.data.model_name.endswith("-teacher")
    assert "knowledge-distillation" not in card.data.tags
    assert card.data.eval_results[0].metric_value == 0.93


@pytest.mark.parametrize("key", ["accuracy", "macro_f1"])
def test_no_nested_dicts_in_model_index(key):
    index = ModelCard(card_for()).data.to_dict()["model-index"]
    for result in index[0]["results"]:
        for metric in result["metrics"]:
            assert isinstance(metric["value"], float)


def test_the_oos_threshold_is_in_the_card_and_the_config(tmp_path):
    card = card_for()
    assert "`oos_threshold` = 0.4321" in card
    assert "out-of-scope recall 0.912" in card  # the thresholded test figure
    assert "config.oos_threshold" in card  # the usage snippet applies it
    assert "31 queries only the distilled student gets right, 12 only the baseline" in card
    assert "p = 0.0053" in card
    tiny_bert().save_pretrained(tmp_path)
    store_threshold(tmp_path, 0.4321)
    assert AutoConfig.from_pretrained(tmp_path).oos_threshold == 0.4321


def test_the_card_names_a_hidden_state_term_and_the_transfer_set():
    plain = card_for()
    assert "Hidden-state term" not in plain and "Transfer set" not in plain
    features = PARAMS.features.model_copy(update={"loss": "hidden_mse", "weight": 0.5})
    params = PARAMS.model_copy(update={"features": features})
    inputs = CardInputs(params, METRICS, DATA, HISTORY, NAMES, "hi", SOURCES, transfer_rows=2400)
    card = str(render(inputs, "student"))
    assert "plus **0.5 x hidden_mse**" in card and "the projection is not part of this model" in card
    assert f"teacher layer {PARAMS.student.layers}[k]" in card
    assert "soft targets also on 2,400 rows without labels" in card


def test_the_card_names_an_ensemble_of_teachers():
    assert "**Teachers**" not in card_for()
    soft = PARAMS.soft_targets.model_copy(update={"ensemble_seeds": [1, 2]})
    params = PARAMS.model_copy(update={"soft_targets": soft})
    metrics = {**METRICS, "ensemble": {**METRICS["teacher"], "accuracy": 0.88, "teachers": 3},
               "student_vs_ensemble": {"accuracy_ratio": 0.987}}
    card = " ".join(str(render(CardInputs(params, metrics, DATA, HISTORY, NAMES, "hi", SOURCES),
                               "student")).split())
    assert (f"mean of the logits of 3 teachers, fine-tuned alike from seeds {PARAMS.seed} "
            "(the published teacher) and 1, 2") in card
    assert "Together they reach test accuracy 0.8800; this student keeps 98.7% of it." in card


def test_usage_names_the_hub_repository_and_the_local_folder():
    assert 'model="models/student"' in card_for()  # card.repo_id null: the local folder only
    params = PARAMS.model_copy(update={"card": PARAMS.card.model_copy(
        update={"repo_id": "me/distilled"})})
    student, teacher = card_for(params=params), card_for(params=params, role="teacher")
    assert 'pipeline("text-classification", model="me/distilled")' in student
    assert 'model="models/student"' in student  # the local-folder form beside it
    assert 'model="me/distilled-teacher"' in teacher and 'model="models/teacher"' in teacher
    assert "path/to/this/folder" not in student


@pytest.fixture
def experiment_checkout(tmp_path, monkeypatch):
    """A git checkout whose committed params.yaml has alpha 0.5, run as a DVC experiment that
    set alpha 0.3 and student.layers [0, 2]."""
    from conftest import run_checked

    params = yaml.safe_load((Path(__file__).parents[1] / "params.yaml").read_text())
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    for cmd in (["git", "init", "-q"], ["git", "add", "params.yaml"],
                ["git", "-c", "user.email=t@x", "-c", "user.name=t", "commit", "-qm", "base"]):
        run_checked(cmd, tmp_path)
    base = run_checked(["git", "rev-parse", "HEAD"], tmp_path).strip()
    params["alpha"] = 0.3
    params["student"]["layers"] = [0, 2]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DVC_EXP_BASELINE_REV", base)
    monkeypatch.setenv("DVC_EXP_NAME", "tangy-dace")
    return base


def test_an_experiments_card_reproduces_that_experiment(experiment_checkout):
    from pipeline.card import origin

    found = origin(Path("params.yaml"))
    assert found.commit == experiment_checkout[:7] and found.experiment == "tangy-dace"
    assert found.changed == ["alpha=0.3", "student.layers=[0, 2]"]
    params = PARAMS.model_copy(update={"alpha": 0.3})
    inputs = CardInputs(params, METRICS, DATA, HISTORY, NAMES, "hi", SOURCES, 0, found)
    reproduce = str(render(inputs, "student")).split("## How to reproduce")[1]
    assert (f"git checkout {experiment_checkout[:7]}\n"
            "dvc exp run -S alpha=0.3 -S 'student.layers=[0, 2]'\n```") in reproduce
    assert "dvc repro" not in reproduce  # the commit's own params would make another model
    assert "dvc exp pull origin tangy-dace" in reproduce
    assert "dvc exp apply tangy-dace" in reproduce


def test_a_run_of_the_committed_params_reproduces_with_dvc_repro(experiment_checkout, monkeypatch):
    from pipeline.card import origin

    monkeypatch.delenv("DVC_EXP_NAME")
    Path("params.yaml").write_text(
        (Path(__file__).parents[1] / "params.yaml").read_text())  # as committed
    found = origin(Path("params.yaml"))
    assert found.changed == [] and found.experiment is None
    inputs = CardInputs(PARAMS, METRICS, DATA, HISTORY, NAMES, "hi", SOURCES, 0, found)
    reproduce = str(render(inputs, "student")).split("## How to reproduce")[1]
    assert f"git checkout {experiment_checkout[:7]}\ndvc repro\n```" in reproduce
