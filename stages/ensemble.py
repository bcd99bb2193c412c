"""Stage ensemble: the teachers of soft_targets.ensemble_seeds, each trained as the teacher is
-> models/trained/ensemble (with only members.json when the list is empty)."""

from transformers import set_seed

from pipeline import distributed, ensemble, paths
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
    seeds = params.soft_targets.ensemble_seeds
    if seeds:
        check_models(params)
        ds, names = load_prepared(paths.PREPARED)
        task = get_task(params.task)
    for seed in seeds:
        set_seed(seed)
        model = build_teacher(params.teacher, names, task, ds["train"])
        processor = load_processor(params.teacher.model, task, ds["train"])
        role = ensemble.member_role(seed)
        fit_and_save(
            ensemble.STAGE, role, params, model, processor, ds, params.teacher.train,
            model_source(params.teacher.model), jitter=params.teacher.jitter, seed=seed,
            live=paths.LIVE / role,
        )
    if distributed.is_main():
        # DVC wants every declared output, members or not.
        for folder in (ensemble.FOLDER, paths.REPORTS / ensemble.STAGE,
                       paths.LIVE / ensemble.STAGE):
            folder.mkdir(parents=True, exist_ok=True)
        ensemble.write_members(seeds)


if __name__ == "__main__":
    main()
