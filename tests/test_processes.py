"""Which process does what when work runs in several: seeds spread over GPUs, DDP ranks."""

from __future__ import annotations

import os
import time

import pytest

from pipeline.distributed import is_secondary
from pipeline.stages.seeds import visible_gpus, worker_pool


def gpu_of_worker() -> tuple[int, str]:
    time.sleep(0.5)  # long enough that every worker takes a task
    return os.getpid(), os.environ["CUDA_VISIBLE_DEVICES"]


def test_concurrent_seeds_are_spread_over_the_gpus_one_each():
    with worker_pool(3, ["0", "2"]) as pool:
        seen = dict(future.result() for future in [pool.submit(gpu_of_worker) for _ in range(6)])
    # Three workers, round-robin over GPUs 0 and 2: never all on GPU 0.
    assert len(seen) == 3
    assert sorted(seen.values()) == ["0", "0", "2"]


@pytest.mark.parametrize(("listed", "gpus"), [("0,2", ["0", "2"]), ("", []), ("-1", []),
                                               ("GPU-a1, GPU-b2", ["GPU-a1", "GPU-b2"])])
def test_the_visible_gpus_are_cuda_visible_devices(monkeypatch, listed, gpus):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", listed)
    assert visible_gpus() == gpus


@pytest.mark.parametrize(("env", "secondary"), [
    ({}, False),
    ({"LOCAL_RANK": "0", "NODE_RANK": "0"}, False),  # rank 0 once Lightning's launcher has set them
    ({"LOCAL_RANK": "1"}, True),  # a process Lightning's launcher started
    ({"LOCAL_RANK": "0", "NODE_RANK": "1"}, True),  # rank 0 of the second node
    ({"RANK": "3"}, True),  # torchrun
    ({"SLURM_NTASKS": "1", "SLURM_PROCID": "0"}, False),
    ({"SLURM_NTASKS": "4", "SLURM_PROCID": "2"}, True),  # srun, a task per device
])
def test_only_rank_zero_is_primary(monkeypatch, env, secondary):
    for name in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_NTASKS", "SLURM_PROCID"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert is_secondary() is secondary
