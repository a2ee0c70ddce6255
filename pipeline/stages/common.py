"""What every stage shares: JSON files written atomically, logging, building a family's model."""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

from pipeline.fsutil import read_json, write_atomic  # noqa: F401  (read_json: imported from here too)
from pipeline.plugins import build_model  # noqa: F401  (imported from here too)
from pipeline.spec.experiment import ExperimentSpec

log = logging.getLogger("pipeline")


def write_json(path: Path, payload: dict) -> Path:
    text = json.dumps(payload, indent=2, sort_keys=True) + "\n"
    return write_atomic(path, lambda tmp: tmp.write_text(text))


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # Lightning's advertisement for its hosted logger, printed on every fit; we log to MLflow.
    logging.getLogger("pytorch_lightning.utilities.rank_zero").addFilter(
        lambda record: "litlogger" not in record.getMessage()
    )
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")


def spec_command(spec: ExperimentSpec, command: str, spec_path: Path | None = None) -> str:
    return f"pipeline {command} {spec_path or f'specs/{spec.name}.yaml'}"
