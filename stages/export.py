"""Stage export@<role>: the trained teacher or student as ONNX, fp32 and int8, each checked
-> models/onnx/<role> and reports/export/<role>.json."""

import dataclasses
import logging
import sys

import numpy as np

from pipeline import onnx_export, paths
from pipeline.config import load_params
from pipeline.errors import UserError, stage_main
from pipeline.models import load_trained
from pipeline.outputs import atomic_dir, write_json
from pipeline.prepared import load_prepared
from pipeline.registry import ROLES, VARIANTS
from pipeline.tasks import get_task

log = logging.getLogger("export")


@stage_main
def main() -> None:
    role = sys.argv[1] if len(sys.argv) == 2 else ""
    if role not in ROLES:
        raise UserError(f"usage: python -m stages.export ROLE, ROLE one of {', '.join(ROLES)}")
    params = load_params(paths.PARAMS)
    ds, _ = load_prepared(paths.PREPARED)
    task = get_task(params.task)
    model, processor = load_trained(role, task)
    validation, cfg, max_length = ds["validation"], params.export, params.data.max_length
    keep, vocabulary = None, {}
    if cfg.vocabulary == "training":
        keep = onnx_export.used_vocabulary(processor, ds["train"][task.column], max_length)
        vocabulary = {
            "vocabulary_rows": len(keep),
            "validation_unknown_token_rate": onnx_export.unknown_rate(
                processor, validation[task.column], max_length, keep),
        }
    with atomic_dir(paths.onnx(role)) as out:
        result = onnx_export.export(
            model, processor, task, validation[task.column], np.asarray(validation["label"]),
            out, max_length, params.evaluate.batch_size, cfg.logits_tolerance,
            cfg.int8_tolerance, ROLES[role].title, keep,
            onnx_export.Embeddings(bits=int(cfg.embeddings[3:]), block_size=cfg.embeddings_block_size))
        sizes = {f"{name}_mb": (out / spec.file).stat().st_size / 2**20
                 for name, spec in VARIANTS.items()}
    report = {**dataclasses.asdict(result), **vocabulary, **sizes}
    log.info("%s: %s", role, report)
    write_json(paths.EXPORTS / f"{role}.json", report)


if __name__ == "__main__":
    main()
