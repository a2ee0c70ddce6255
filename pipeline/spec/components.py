"""Spec sections shared by every model family (the data, the training, the tracking, the optimiser).
Pure pydantic, and no registry: a family's spec imports them without importing any family."""

from __future__ import annotations

import difflib
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


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


def _dataset_names(schema: dict) -> None:
    from pipeline import plugins

    schema["enum"] = [*plugins.datasets(), UPSTREAM]


UPSTREAM = "upstream"
"""`data.dataset: upstream`: the dataset written by the stage of the spec named as `upstream.data`."""


class DataSpec(Strict):
    dataset: str = Field(
        "fashion_mnist", json_schema_extra=_dataset_names,
        description="A registered dataset (`pipeline models` lists them), or `upstream`: the dataset written by the "
                    "stage of the spec named as `upstream.data`.")
    train_subset: int | None = Field(
        None, gt=0,
        description="Pretrain on only this many training images (seeded); null: all of them.",
    )
    probe_subset: int | None = Field(
        None, gt=0,
        description="Train downstream probes on only this many training images; null: all.",
    )
    eval_subset: int | None = Field(
        None, gt=0,
        description="Score downstream tasks on only this many validation and this many test examples (a "
                    "seeded choice, kept in the splits' order); null: all. For quick specs, whose figures "
                    "are smoke tests: a spec that reports results scores every test example.",
    )
    val_fraction: float = Field(
        0.1, ge=0, lt=1, description="Fraction of the training images held out for validation."
    )
    batch_size: int = Field(256, gt=0)
    num_workers: int = Field(0, ge=0)

    @field_validator("dataset")
    @classmethod
    def _registered(cls, dataset: str) -> str:
        from pipeline import plugins

        known = [*plugins.datasets(), UPSTREAM]
        if dataset not in known:
            close = difflib.get_close_matches(dataset, known, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ValueError(f"unknown dataset {dataset!r}; {hint}datasets: {', '.join(known)} (see `pipeline models`)")
        return dataset


class TrainSpec(Strict):
    max_epochs: int = Field(10, gt=0)
    limit_train_batches: float | int = Field(
        1.0, gt=0, description="Fraction (float) or number (int) of training batches per epoch."
    )
    optimizer: OptimizerSpec = OptimizerSpec()
    scheduler: SchedulerSpec = SchedulerSpec()
    precision: Literal["32-true", "16-mixed", "bf16-mixed"] = "32-true"
    accelerator: Literal["auto", "cpu", "gpu", "mps"] = "auto"
    devices: int | Literal["auto"] = 1
    strategy: Literal["auto", "ddp", "ddp_spawn"] = "auto"
    num_nodes: int = Field(1, gt=0)
    deterministic: bool = True
    log_every_n_steps: int = Field(10, gt=0)
    gradient_clip_norm: float | None = Field(
        None, gt=0,
        description="Rescale the gradients so that their global L2 norm is at most this before each optimizer "
                    "step (Lightning's gradient_clip_val, by norm); null: no clipping. Recurrent networks over "
                    "long sequences are the usual users. Not for kinds that step their optimiser themselves (esn).",
    )
    checkpoint_every_n_steps: int | None = Field(
        None, gt=0,
        description="Write checkpoints/last.ckpt every N optimizer steps; null: at each epoch end.",
    )
    checkpoint_min_interval_s: float = Field(
        60.0, ge=0,
        description="Skip a checkpoint due sooner than this many seconds after the previous one (the end of "
                    "each fit is always written): a kill loses at most this long of training, and short epochs "
                    "do not spend their time writing checkpoints. 0: every epoch end (or N steps).",
    )


class TrackingSpec(Strict):
    uri: str | None = Field(
        None,
        description="MLflow tracking URI; null: $MLFLOW_TRACKING_URI or the project's sqlite store.",
    )
    experiment: str | None = Field(None, description="MLflow experiment; null: the spec name.")
    register_as: str | None = Field(
        None, description="After training, register the trained model in MLflow's model registry under this "
                          "name: specs on other machines sharing the server then name it as an upstream, "
                          "`upstream: {encoder: 'models:/<name>/<version>'}`.")
