"""Stage soft_targets: the teacher's logits (with an ensemble, the mean of its teachers') for
train and validation, once, and for the transfer set when params ask for one -> data/soft_targets."""

from pathlib import Path

from pipeline import augment, ensemble, jitter, paths, soft_targets
from pipeline.config import load_params
from pipeline.errors import stage_main
from pipeline.models import load_trained
from pipeline.outputs import atomic_dir
from pipeline.prepared import load_prepared
from pipeline.tasks import ImageTask, get_task


@stage_main
def main() -> None:
    params = load_params(paths.PARAMS)
    cfg = params.soft_targets
    ds, names = load_prepared(paths.PREPARED)
    task = get_task(params.task)
    teacher, processor = load_trained("teacher", task)
    teachers = [(teacher, processor), *ensemble.load_members(cfg.ensemble_seeds, task)]
    soft = soft_targets.compute(teachers, task, ds, cfg.batch_size, params.data.max_length)
    a, rows = cfg.augment, []
    if a.copies and isinstance(task, ImageTask):
        rows = jitter.shifted_copies(ds["train"][task.column], a.copies, a.shift, params.seed)
    elif a.copies:
        rows = augment.copies(ds["train"][task.column], a.copies, params.seed, a.word_dropout,
                              a.mask, a.swap, processor.mask_token or processor.unk_token)
    if cfg.unlabelled:  # text only (params say so)
        lines = Path(cfg.unlabelled).read_text(encoding="utf-8").splitlines()
        rows += [line.strip() for line in lines if line.strip()]
    if rows:
        soft[soft_targets.TRANSFER] = soft_targets.transfer_set(
            teachers, task, rows, cfg.batch_size, params.data.max_length)
    with atomic_dir(paths.SOFT_TARGETS) as folder:
        soft_targets.save(soft, folder,
                          soft_targets.provenance(ds, names))


if __name__ == "__main__":
    main()
