"""Which process this is when one training runs in several (Lightning's DDP, torchrun, srun).

Lightning's DDP starts each extra process by running the same command again; those processes train
their share and must do nothing else: the evaluation, the report and every file besides the
training's are rank 0's. Read from the environment the launchers set, so it answers before (and
without) importing Lightning."""

from __future__ import annotations

import os

RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK")
"""torchrun's global rank; Lightning's launcher's rank on the node and the node's rank."""


def is_secondary() -> bool:
    """True in every process of a multi-process training but global rank 0 (which has rank 0 on
    node 0)."""
    env = os.environ
    if any(int(env.get(name) or 0) != 0 for name in RANK_VARIABLES):
        return True
    # srun with a task per device: SLURM numbers the tasks.
    return int(env.get("SLURM_NTASKS") or 1) > 1 and int(env.get("SLURM_PROCID") or 0) != 0
