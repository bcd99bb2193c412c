"""Stage distill: the student trained on the distillation loss -> models/trained/student."""

from functools import partial

from transformers import set_seed

from pipeline import paths, soft_targets
from pipeline.config import load_params
from pipeline.distill import DistillationTrainer, check_layer_map
from pipeline.errors import stage_main
from pipeline.models import load_student, load_trained, pretrained_teacher, student_source
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
    soft = soft_targets.load(paths.SOFT_TARGETS,
                             soft_targets.provenance(ds, names))
    for split in soft_targets.SPLITS:
        ds[split] = soft_targets.attach(ds[split], soft[split])
    task = get_task(params.task)
    finetuned = partial(load_trained, "teacher", task)
    layers_from = (finetuned if params.student.from_teacher == "finetuned"
                   else partial(pretrained_teacher, params, names, task, ds["train"]))
    model, processor = load_student(params.student, names, layers_from, task, ds["train"])
    # After the student is built: an image student's processor standardises with the statistics
    # of the labelled images, as the baseline's does.
    if soft_targets.TRANSFER in soft:
        ds["train"] = soft_targets.with_transfer(ds["train"], soft[soft_targets.TRANSFER])
    # A hidden-state term runs the fine-tuned teacher on every batch.
    teacher = None
    if params.features.loss:
        teacher, teacher_processor = finetuned()
        check_layer_map(model, teacher, processor, teacher_processor, params.layer_map())
    fit_and_save(
        "distill", "student", params, model, processor, ds, params.student.train,
        student_source(params),
        make_trainer=partial(DistillationTrainer, alpha=params.alpha,
                             temperature=params.temperature, features=params.features,
                             teacher=teacher, layer_map=params.layer_map()),
        carry=(soft_targets.TEACHER_LOGITS,),
    )


if __name__ == "__main__":
    main()
