"""Stage baseline: the student trained on hard labels only -> models/trained/baseline.

What a user gets without this pipeline: when the student is made from the teacher, it is made
from the teacher *before* fine-tuning (teacher.model), so it owes the fine-tuned teacher nothing.
"""

from functools import partial

from transformers import set_seed

from pipeline import paths
from pipeline.config import load_params
from pipeline.errors import stage_main
from pipeline.models import load_student, pretrained_teacher, student_source
from pipeline.preflight import check_models
from pipeline.prepared import load_prepared
from pipeline.tasks import get_task
from pipeline.training import fit_and_save


@stage_main
def main() -> None:
    params = load_params(paths.PARAMS)
    check_models(params)
    set_seed(params.student.seed)
    ds, names = load_prepared(paths.PREPARED)
    task = get_task(params.task)
    model, processor = load_student(
        params.student, names, partial(pretrained_teacher, params, names, task, ds["train"]),
        task, ds["train"],
    )
    fit_and_save("baseline", "baseline", params, model, processor, ds, params.student.train,
                 student_source(params))


if __name__ == "__main__":
    main()
