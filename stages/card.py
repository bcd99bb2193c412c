"""Stage card: models/student (the publishable folder: weights + model card) and
reports/model_card.md, rendered from measured figures only."""

import json
import shutil

from pipeline import paths
from pipeline.card import render
from pipeline.config import load_params
from pipeline.data import load_prepared
from pipeline.errors import stage_main
from pipeline.outputs import atomic_dir, write_text


@stage_main
def main() -> None:
    params = load_params(paths.PARAMS)
    metrics = json.loads(paths.METRICS.read_text())
    ds, names = load_prepared(paths.PREPARED)
    card = str(render(params, metrics, names, ds["test"][0]["text"]))
    with atomic_dir(paths.release("student")) as folder:
        shutil.copytree(paths.trained("student"), folder, dirs_exist_ok=True)
        (folder / "README.md").write_text(card)
    write_text(paths.REPORTS / "model_card.md", card)


if __name__ == "__main__":
    main()
