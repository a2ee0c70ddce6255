"""What every stage shares: JSON files written atomically, logging, the garbage collector's settings,
building a family's model."""

from __future__ import annotations

import atexit
import gc
import json
import logging
import os
import warnings
from pathlib import Path

from pipeline.fsutil import read_json, write_atomic  # noqa: F401  (read_json: imported from here too)
from pipeline.plugins import build_model  # noqa: F401  (imported from here too)
from pipeline.spec.experiment import ExperimentSpec

log = logging.getLogger("pipeline")


def write_json(path: Path, payload: dict) -> Path:
    text = json.dumps(payload, indent=2, sort_keys=True) + "\n"
    return write_atomic(path, lambda tmp: tmp.write_text(text))


VERBOSITY = "PIPELINE_LOG_LEVEL"
"""The environment variable `pipeline -v/-q` sets: the processes a command starts (DDP ranks, seed
workers) say as much as it does."""


def set_verbosity(level: str) -> None:
    """debug, info (the default) or warning; for this process and those it starts."""
    os.environ[VERBOSITY] = level


def quiet() -> bool:
    return os.environ.get(VERBOSITY) == "warning"


COLLECTOR_THRESHOLDS = (2000, 10, 100)
"""The cyclic garbage collector's thresholds in a stage's process (`tune_collector`); CPython's
default is (700, 10, 10)."""

_freeze_at_exit = False


def tune_collector() -> None:
    """Spare a stage's process the collector's scans of what it imports. Starting a stage imports
    torch, Lightning (with torchmetrics, torchvision, torch._dynamo) and MLflow: a million objects
    or so that live as long as the process. CPython's defaults collect the oldest generation each
    time it has grown by a quarter: eight or nine full scans of them during the start, a fifth of
    it (bench/stage_start.py), and again on the way out, where the interpreter collects several
    times more (one to two seconds after the stage has finished). Here:
    - the thresholds (`COLLECTOR_THRESHOLDS`): young collections less often, and a full one only
      after a hundred middle-generation collections (CPython's own rule still waits for the
      long-lived objects to grow by a quarter), one or none during the start;
    - at exit, `gc.freeze()` (an atexit hook): the collections of the interpreter's shutdown skip
      every object alive by then, whose memory goes back with the process. Reference-counted
      objects are still finalised as usual, atexit hooks (loggers, MLflow, multiprocessing, temporary
      folders) still run; only the finalisers of cyclic garbage left at exit are skipped, which
      Python does not promise to run anyway.
    Thresholds already set higher are kept, and a collector switched off (threshold 0) stays off.
    Called by `setup_logging`, the first thing every stage does, before its heavy imports; in a
    process that calls the stages in turn (the tests), the settings stay for the rest of it."""
    global _freeze_at_exit
    current = gc.get_threshold()
    if current[0]:
        gc.set_threshold(*(max(have, want) for have, want in zip(current, COLLECTOR_THRESHOLDS, strict=True)))
    if not _freeze_at_exit:
        atexit.register(gc.freeze)
        _freeze_at_exit = True


def setup_logging() -> None:
    """A stage's set-up, the first thing it does: its logging (the level `pipeline -v/-q` set),
    and the garbage collector's settings for a process that imports torch, Lightning and MLflow
    (`tune_collector`)."""
    tune_collector()
    level = getattr(logging, os.environ.get(VERBOSITY, "info").upper(), logging.INFO)
    logging.basicConfig(level=level, format="%(message)s")
    logging.getLogger("pipeline").setLevel(level)
    if level > logging.INFO:  # Lightning's and MLflow's notes too
        for name in ("pytorch_lightning", "lightning_fabric", "lightning", "mlflow"):
            logging.getLogger(name).setLevel(level)
    # Lightning's advertisement for its hosted logger, printed on every fit; we log to MLflow.
    logging.getLogger("pytorch_lightning.utilities.rank_zero").addFilter(
        lambda record: "litlogger" not in record.getMessage()
    )
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")


def spec_command(spec: ExperimentSpec, command: str, spec_path: Path | None = None) -> str:
    return f"pipeline {command} {spec_path or f'specs/{spec.name}.yaml'}"
