"""Stage baseline: the student trained on hard labels only -> models/trained/baseline."""

from transformers import set_seed

from pipeline import paths
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
    model, processor = load_student(
        params.student, names, paths.trained("teacher"), get_task(params.task), ds["train"]
    )
    fit_and_save("baseline", "baseline", params, model, processor, ds, params.student.train)


if __name__ == "__main__":
    main()
