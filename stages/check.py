"""Stage check: the whole params.yaml validated, and checked against the models it names, before
DVC clears any stage's outputs to rerun it -> reports/params_check.json.

Every stage depends on its output, so `dvc repro` runs it first; a typo then costs nothing.
"""

import hashlib
import json

from pipeline import paths
from pipeline.config import Params, load_params
from pipeline.errors import stage_main
from pipeline.outputs import write_json
from pipeline.preflight import check_models


@stage_main
def main() -> None:
    check_models(load_params(paths.PARAMS))
    # The output names the schema the params passed, not the params: a changed param reruns
    # this check, and only the stages that read it, not every stage after the check.
    schema = json.dumps(Params.model_json_schema(), sort_keys=True).encode()
    write_json(paths.PARAMS_CHECK, {"schema": hashlib.sha256(schema).hexdigest()[:16]})


if __name__ == "__main__":
    main()
