"""Stage card: the publishable folders models/student and models/teacher (weights, their ONNX
exports under onnx/, model card README.md) and reports/model_card.md, rendered from measured
figures only. The published student goes to the stage's MLflow run and into the Model Registry,
as a new version of `card.model_name`."""

import shutil

import datasets

from pipeline import paths, prepared, soft_targets
from pipeline.card import CardInputs, origin, render, store_threshold
from pipeline.config import load_params
from pipeline.errors import stage_main
from pipeline.inputs import read_json, reading
from pipeline.outputs import atomic_dir, write_text
from pipeline.registry import ROLES
from pipeline.tracking import register_model, stage_run


@stage_main
def main() -> None:
    params = load_params(paths.PARAMS)
    metrics = read_json(paths.METRICS, "evaluate")
    data = read_json(paths.REPORTS / "data.json", prepared.STAGE)
    ds, names = prepared.load_prepared(paths.PREPARED)
    published = [role for role, spec in ROLES.items() if spec.published]
    sources = {role: read_json(paths.REPORTS / f"{role}.json", ROLES[role].stage)["model_source"]
               for role in published}
    with reading(paths.SOFT_TARGETS, soft_targets.STAGE) as folder:
        soft = datasets.load_from_disk(str(folder))
    transfer_rows = len(soft[soft_targets.TRANSFER]) if soft_targets.TRANSFER in soft else 0
    exports = {role: read_json(paths.EXPORTS / f"{role}.json", f"export@{role}")
               for role in published}
    for role in published:
        stage = ROLES[role].stage
        history = read_json(paths.LIVE / stage / "history.json", stage)["epochs"]
        example = ds["test"][0]["text"] if params.task == "text-classification" else None
        inputs = CardInputs(params, metrics, data, history, names, example, sources,
                            transfer_rows, origin(paths.PARAMS), exports)
        card = str(render(inputs, role))
        with atomic_dir(paths.release(role)) as folder:
            shutil.copytree(paths.trained(role), folder, dirs_exist_ok=True)
            # Where the Hub's ONNX folders and transformers.js look for them.
            shutil.copytree(paths.onnx(role), folder / "onnx")
            if "oos_threshold" in metrics[role]:
                store_threshold(folder, metrics[role]["oos_threshold"])
            (folder / "README.md").write_text(card)
        if role == "student":
            write_text(paths.REPORTS / "model_card.md", card)
    with stage_run("card", params):
        register_model(paths.release("student"), params.card.model_name)


if __name__ == "__main__":
    main()
