"""What every stage shares: JSON files written atomically, logging, building a family's model."""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.fsutil import write_atomic
from pipeline.spec.experiment import ExperimentSpec

log = logging.getLogger("pipeline")


def write_json(path: Path, payload: dict) -> Path:
    text = json.dumps(payload, indent=2, sort_keys=True) + "\n"
    return write_atomic(path, lambda tmp: tmp.write_text(text))


def read_json(path: Path, hint: str) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise PipelineError(f"{path} is missing: {hint}") from None
    except (OSError, json.JSONDecodeError) as err:
        raise PipelineError(f"{path} is unreadable ({err}): {hint}") from None


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # Lightning's advertisement for its hosted logger, printed on every fit; we log to MLflow.
    logging.getLogger("pytorch_lightning.utilities.rank_zero").addFilter(
        lambda record: "litlogger" not in record.getMessage()
    )
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")


def build_model(spec: ExperimentSpec, input_shape: tuple[int, ...], num_classes: int, **extra):
    """The spec's model, as its family's LightningModule (freshly initialised)."""
    from pipeline.models import REGISTRY

    return REGISTRY[spec.model.kind].load_class()(spec.model, spec.train, input_shape, num_classes, **extra)


def spec_command(spec: ExperimentSpec, command: str, spec_path: Path | None = None) -> str:
    return f"pipeline {command} {spec_path or f'specs/{spec.name}.yaml'}"
