"""A model family plugin: `toy_mlp`, a supervised MLP on flattened inputs. Its spec (pure
pydantic) is here, its LightningModule in `module.py`, its entry in `plugin.py`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from pipeline.spec.components import Strict


class ToyMLPSpec(Strict):
    """An MLP (Linear -> ReLU per hidden layer) and a linear head, trained by cross-entropy."""

    kind: Literal["toy_mlp"]
    hidden: list[int] = Field([32], min_length=1, description="Units of each hidden layer.")
