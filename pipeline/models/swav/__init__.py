"""SwAV: the spec. The LightningModule is in `module.py` (imported only to train)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from pipeline.spec.components import BackboneSpec, Strict


class MultiCropSpec(Strict):
    """Crops drawn from each image, all as batched tensor operations on the whole batch."""

    large_crops: int = Field(2, ge=2, description="Codes are computed from these.")
    large_size: int = Field(28, gt=0)
    large_scale: tuple[float, float] = Field((0.35, 1.0), description="Area fraction range.")
    small_crops: int = Field(4, ge=0)
    small_size: int = Field(14, gt=0)
    small_scale: tuple[float, float] = (0.1, 0.35)
    flip: float = Field(0.5, ge=0, le=1, description="Probability of a horizontal flip.")
    brightness: float = Field(0.4, ge=0, description="Max relative brightness change.")
    contrast: float = Field(0.4, ge=0, description="Max relative contrast change.")
    erase: float = Field(0.0, ge=0, le=1, description="Probability of erasing a random box.")

    @model_validator(mode="after")
    def _scales(self) -> MultiCropSpec:
        for name in ("large_scale", "small_scale"):
            low, high = getattr(self, name)
            if not 0 < low <= high <= 1:
                raise ValueError(f"{name} must satisfy 0 < low <= high <= 1 (got {(low, high)})")
        return self


class SwAVSpec(Strict):
    kind: Literal["swav"]
    backbone: BackboneSpec = BackboneSpec()
    projection_hidden_dim: int = Field(512, gt=0)
    projection_dim: int = Field(128, gt=0)
    prototypes: int = Field(100, gt=0, description="K; about 3-10x the number of classes.")
    temperature: float = Field(0.1, gt=0, description="tau of the swapped-prediction softmax.")
    sinkhorn_epsilon: float = Field(0.05, gt=0)
    sinkhorn_iterations: int = Field(3, gt=0)
    freeze_prototypes_steps: int = Field(
        300, ge=0, description="The prototypes get no update for this many first steps."
    )
    queue_length: int = Field(
        0, ge=0, description="Stored projections added to the Sinkhorn batch; 0: no queue."
    )
    queue_start_epoch: int = Field(1, ge=0, description="The queue is used from this epoch on.")
    multicrop: MultiCropSpec = MultiCropSpec()
