"""Spec sections shared by every model family. Pure pydantic: importing this is cheap."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Strict(BaseModel):
    """Base of every spec section: unknown keys are errors and a validated spec is immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class BackboneSpec(Strict):
    """The encoder that every family trains and every downstream task reads features from."""

    name: Literal["convnet", "resnet18"] = Field(
        "convnet",
        description="convnet: a small VGG-style net for 28x28 images; resnet18: for GPUs.",
    )
    widths: list[int] = Field(
        [32, 64, 128],
        min_length=1,
        description="convnet only: channels of each stage (each stage halves the resolution).",
    )
    convs_per_stage: int = Field(1, gt=0, description="convnet only: 3x3 convs per stage.")
    feature_grid: int = Field(
        2,
        gt=0,
        description="The last feature map is average-pooled to a grid x grid map and flattened.",
    )

    @model_validator(mode="after")
    def _positive_widths(self) -> BackboneSpec:
        if any(w <= 0 for w in self.widths):
            raise ValueError(f"widths must all be > 0 (got {self.widths})")
        return self


class OptimizerSpec(Strict):
    name: Literal["adam", "adamw", "sgd"] = "adamw"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-6, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1, description="sgd only")


class SchedulerSpec(Strict):
    name: Literal["none", "cosine"] = "cosine"
    warmup_epochs: float = Field(0.0, ge=0, description="Linear warm-up before the schedule.")
    min_lr_ratio: float = Field(0.01, ge=0, le=1, description="cosine: final lr / initial lr.")
