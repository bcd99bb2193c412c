"""Stage prepare: data.source -> data/prepared (train/validation/test + labels.json)."""

import logging

from pipeline import paths
from pipeline.config import load_params
from pipeline.data import data_report, prepare_dataset, source_revision, train_test_overlap
from pipeline.errors import stage_main
from pipeline.outputs import atomic_dir, write_json
from pipeline.prepared import save_prepared
from pipeline.tasks import get_task

log = logging.getLogger("prepare")


@stage_main
def main() -> None:
    params = load_params(paths.PARAMS)
    # A Hub branch moves: the commit it points at now is the one loaded and recorded.
    revision = source_revision(params.data.source)
    column = get_task(params.task).column
    ds, names = prepare_dataset(params.data, params.seed, column, revision=revision)
    overlap = train_test_overlap(ds)
    report = {**data_report(ds, names, params.data.oos_label, overlap),
              "source_revision": revision}
    log.info("prepared %s rows, %d labels", report["rows"], len(names))
    if overlap:
        examples = [ds["test"][i][column] if column == "text" else f"test row {i}"
                    for i in overlap[:3]]
        log.warning("%d test rows also occur in train, so the test figures flatter every model; "
                    "for example: %s", len(overlap), "; ".join(map(repr, examples)))
    with atomic_dir(paths.PREPARED) as folder:
        save_prepared(ds, names, folder)
    write_json(paths.REPORTS / "data.json", report)


if __name__ == "__main__":
    main()
