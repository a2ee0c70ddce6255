"""What every stage shares: JSON files written atomically, logging, building a family's model."""

from __future__ import annotations

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


def setup_logging() -> None:
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
