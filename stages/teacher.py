"""Stage teacher: fine-tune the teacher (or check an already fine-tuned one) -> models/trained/teacher."""

from pipeline import paths
from pipeline.config import load_params
from pipeline.errors import stage_main
from pipeline.preflight import check_models
from pipeline.prepared import load_prepared
from pipeline.teachers import train_teacher


@stage_main
def main() -> None:
    params = load_params(paths.PARAMS)
    check_models(params)
    ds, names = load_prepared(paths.PREPARED)
    train_teacher("teacher", "teacher", params, ds, names, params.seed)


if __name__ == "__main__":
    main()
