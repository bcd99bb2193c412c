"""Stage distill: the student trained on the distillation loss -> models/trained/student."""

import datasets
from transformers import set_seed

from pipeline import paths, soft_targets
from pipeline.config import load_params
from pipeline.data import load_prepared
from pipeline.errors import stage_main
from pipeline.models import load_student
from pipeline.tasks import get_task
from pipeline.training import fit_and_save


@stage_main
def main() -> None:
    params = load_params(paths.PARAMS)
    set_seed(params.seed)
    ds, names = load_prepared(paths.PREPARED)
    soft = datasets.load_from_disk(str(paths.SOFT_TARGETS))
    for split in soft_targets.SPLITS:
        ds[split] = soft_targets.attach(ds[split], soft[split])
    model, processor = load_student(
        params.student, names, paths.trained("teacher"), get_task(params.task), ds["train"]
    )
    fit_and_save(
        "distill", "student", params, model, processor, ds, params.student.train,
        distill=(params.alpha, params.temperature),
    )


if __name__ == "__main__":
    main()
