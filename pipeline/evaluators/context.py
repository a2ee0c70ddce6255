"""What a downstream task is given and what it returns.

A task reads the trained model through `Context` (its encoder's features, the model's own
predictions or spiking pass), computed once and shared between the tasks of one evaluation, and
returns a `TaskResult`: metrics, PNG files and one headline figure beside its baselines.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from pipeline.data.datamodule import Splits

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Headline:
    """The one figure a report shows for a task, next to its baselines (same units)."""

    label: str
    """What the figure is, e.g. "linear probe" or "fine-tuned, 1% labels"."""
    value: float
    baselines: dict[str, float] = field(default_factory=dict)
    unit: str = "accuracy"
    """"accuracy" (a fraction, shown as %), or a plain number's unit (e.g. "nJ")."""
    validation: float | None = None
    """The same figure on the validation split (what settings are chosen on), where it has one."""
    baselines_validation: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"label": self.label, "value": self.value, "baselines": dict(self.baselines), "unit": self.unit,
                "validation": self.validation, "baselines_validation": dict(self.baselines_validation)}


@dataclass
class TaskResult:
    metrics: dict[str, float]
    """Logged to MLflow as <task>/<name> and written to metrics/<spec>/evaluate.json."""
    artifacts: list[Path] = field(default_factory=list)
    headline: Headline | None = None


class Context:
    """The trained model and data one evaluation shares between its tasks.

    `trained` is the trained model (a family's LightningModule), `initial` the same model as
    initialised before training: its encoder is the "untrained" baseline of every feature task.
    """

    def __init__(self, spec, splits: Splits, trained, initial, out: Path, device: str, run=None):
        self.spec = spec
        self.splits = splits
        self.trained = trained
        self.initial = initial
        self.out = out
        self.device = device
        self.run = run
        self._cache: dict[str, Any] = {}

    @property
    def num_classes(self) -> int:
        return self.splits.num_classes

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, labels) of a split; the feature tasks need class labels."""
        return self.splits.pair(name)

    @property
    def has_validation(self) -> bool:
        """Whether there are validation examples (data.val_fraction > 0) to report figures on."""
        return len(self.splits.val["input"]) > 0

    def labels(self, name: str) -> torch.Tensor:
        return self.split(name)[1]

    @property
    def model_entry(self):
        """The registry entry of the spec's model kind (None on an upstream encoder)."""
        from pipeline import plugins

        return plugins.models()[self.spec.model.kind] if self.spec.model is not None else None

    def cached(self, key: str, compute: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    FEATURE_SETS = ("encoder", "random_encoder", "raw_input")
    """The trained encoder, the same encoder untrained, the input itself: every feature task
    scores all three the same way."""

    def features(self, name: str) -> dict[str, torch.Tensor]:
        """Features of each split (train, val, test) under one feature set, computed once."""
        from pipeline.evaluators.features import extract_features, raw_input

        def compute() -> dict[str, torch.Tensor]:
            if name == "raw_input":
                return {s: raw_input(self.split(s)[0]) for s in SPLITS}
            encoder = {"encoder": self.trained, "random_encoder": self.initial}[name].encoder
            return {s: extract_features(encoder, self.split(s)[0], device=self.device) for s in SPLITS}

        return self.cached(f"features/{name}", compute)

    def log_series(self, metrics: dict[str, float], step: int) -> None:
        """Points of a curve (e.g. validation accuracy per epoch) into the evaluation's MLflow run."""
        if self.run is not None:
            self.run.log_metrics(metrics, step=step)
