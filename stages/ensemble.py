"""Stage ensemble: the teachers of soft_targets.ensemble_seeds, each trained as the teacher is
-> models/trained/ensemble and reports/ensemble (with only members.json when the list is empty)."""

from pipeline import distributed, ensemble, paths
from pipeline.config import load_params
from pipeline.errors import stage_main
from pipeline.preflight import check_models
from pipeline.prepared import load_prepared
from pipeline.teachers import train_teacher


@stage_main
def main() -> None:
    params = load_params(paths.PARAMS)
    seeds = params.soft_targets.ensemble_seeds
    if seeds:
        check_models(params)
        ds, names = load_prepared(paths.PREPARED)
    for seed in seeds:
        train_teacher(ensemble.STAGE, ensemble.member_role(seed), params, ds, names, seed,
                      live=ensemble.member_live(seed))
    if distributed.is_main():
        ensemble.write_members(seeds)


if __name__ == "__main__":
    main()
