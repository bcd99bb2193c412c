"""Stage teacher: fine-tune the teacher (or check an already fine-tuned one) -> models/trained/teacher."""

from transformers import set_seed

from pipeline import paths
from pipeline.config import load_params
from pipeline.errors import stage_main
from pipeline.models import build_teacher, load_processor, model_source
from pipeline.preflight import check_models
from pipeline.prepared import load_prepared
from pipeline.tasks import get_task
from pipeline.training import fit_and_save


@stage_main
def main() -> None:
    params = load_params(paths.PARAMS)
    check_models(params)
    set_seed(params.seed)
    ds, names = load_prepared(paths.PREPARED)
    task = get_task(params.task)
    model = build_teacher(params.teacher, names, task, ds["train"])
    processor = load_processor(params.teacher.model, task, ds["train"])
    fit_and_save(
        "teacher", "teacher", params, model, processor, ds, params.teacher.train,
        model_source(params.teacher.model), fit=params.teacher.finetune,
        jitter=params.teacher.jitter,
    )


if __name__ == "__main__":
    main()
