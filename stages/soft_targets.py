"""Stage soft_targets: the teacher's logits for train and validation, once -> data/soft_targets."""

from pipeline import paths, soft_targets
from pipeline.config import load_params
from pipeline.errors import stage_main
from pipeline.models import load_classifier, load_saved_processor
from pipeline.outputs import atomic_dir
from pipeline.prepared import load_prepared
from pipeline.tasks import get_task


@stage_main
def main() -> None:
    params = load_params(paths.PARAMS)
    ds, _ = load_prepared(paths.PREPARED)
    teacher_dir = paths.trained("teacher")
    task = get_task(params.task)
    soft = soft_targets.compute(
        load_classifier(teacher_dir, task), load_saved_processor(teacher_dir), task, ds,
        params.soft_targets.batch_size, params.data.max_length,
    )
    with atomic_dir(paths.SOFT_TARGETS) as folder:
        soft.save_to_disk(str(folder))


if __name__ == "__main__":
    main()
