"""dvc.yaml says what each stage runs: its script and every `pipeline` module it imports,
directly or through another module, and nothing it does not read."""

import re
from pathlib import Path

import yaml

from pipeline.code_deps import stage_sources

ROOT = Path(__file__).parents[1]
DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def script(stage: dict) -> str:
    # A training stage's command runs the same module through python or torchrun.
    return re.search(r"-m (stages\.\w+)", stage["cmd"]).group(1).replace(".", "/") + ".py"


def test_every_stage_lists_exactly_the_code_it_imports():
    for name, stage in DVC.items():
        stage = stage.get("do", stage)  # a foreach stage's body
        listed = {d for d in stage["deps"] if d.endswith(".py")}
        imported = {str(p) for p in stage_sources(script(stage), ROOT)}
        assert listed == imported, (
            f"{name}: missing {sorted(imported - listed)}, not imported {sorted(listed - imported)}")


def test_the_import_walk_follows_modules_through_other_modules():
    # stages/teacher.py never names pipeline.metrics; training.py does.
    assert Path("pipeline/metrics.py") in stage_sources("stages/teacher.py", ROOT)


def test_the_baseline_owes_the_fine_tuned_teacher_nothing():
    baseline = DVC["baseline"]
    assert "models/trained/teacher" not in baseline["deps"]
    assert "teacher" not in baseline["params"]  # the teacher's training knobs do not rerun it


def test_evaluation_knobs_do_not_reach_training():
    for name in ("soft_targets", "teacher", "baseline", "distill"):
        assert not [p for p in DVC[name]["params"] if str(p).startswith("evaluate")], name


def test_the_card_depends_on_the_reports_it_names_base_weights_from():
    # stages/card.py reads model_source from the published roles' training reports.
    assert {"reports/teacher.json", "reports/student.json"} <= set(DVC["card"]["deps"])
