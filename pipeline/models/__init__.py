"""The model registry: spec `kind` -> the family's spec class and how to build its module.

Importing this module imports only pydantic: the spec union is built from it, and the CLI
validates specs without loading torch. A family's LightningModule is imported when built.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from pipeline.models.swav import SwAVSpec


@dataclass(frozen=True)
class ModelEntry:
    spec: type[BaseModel]
    module: str
    """`package.module:ClassName` of the LightningModule, built as ClassName(model_spec, train_spec)."""
    summary: str

    def load_class(self) -> Any:
        module_name, class_name = self.module.split(":")
        return getattr(importlib.import_module(module_name), class_name)


REGISTRY: dict[str, ModelEntry] = {
    "swav": ModelEntry(
        spec=SwAVSpec,
        module="pipeline.models.swav.module:SwAV",
        summary="SwAV (Caron et al. 2020): online clustering with swapped prediction, multi-crop",
    ),
}
