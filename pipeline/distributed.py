"""Which process of a torchrun launch this one is, and whether the launch is the one params ask for.

The training stages start through torchrun (dvc.yaml), which tells each process its place in
the environment (RANK, WORLD_SIZE); outside torchrun there is one process, rank 0. Only rank 0
writes outputs, reports and tracking runs: the others train and evaluate their share.
"""

from __future__ import annotations

import os

import torch

from pipeline.config import DistributedConfig
from pipeline.errors import UserError


def rank() -> int:
    return int(os.environ.get("RANK", 0))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", 1))


def is_main() -> bool:
    """True in the one process that writes: rank 0, or the only process."""
    return rank() == 0


def check_launch(cfg: DistributedConfig) -> None:
    """Stop, in one line, a launch that is not the one params.yaml's `distributed` describes.

    A stage started by hand with other torchrun numbers would record results that the params
    (and so DVC) do not account for.
    """
    asked = cfg.nproc_per_node * cfg.nnodes
    if world_size() != asked:
        raise UserError(
            f"this stage runs in {world_size()} process(es), and params.yaml's distributed asks "
            f"for {asked} ({cfg.nnodes} node(s) x {cfg.nproc_per_node}): run it through `dvc "
            f"repro`, or as `torchrun --nnodes {cfg.nnodes} --nproc-per-node "
            f"{cfg.nproc_per_node} -m stages.<stage>` on each node.")
    gpus = torch.cuda.device_count()
    if gpus and cfg.nproc_per_node > gpus:
        raise UserError(
            f"distributed.nproc_per_node is {cfg.nproc_per_node}, and this machine has {gpus} "
            f"GPU(s): set it to {gpus} or fewer (one process per GPU).")
