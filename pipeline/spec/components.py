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


# The choices Lightning's Trainer accepts for each (tests/test_train_options.py checks them against
# Lightning's own registries, so an upgrade that drops one fails there, not in a user's run).
Precision = Literal["32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "64-true"]
Accelerator = Literal["auto", "cpu", "gpu", "cuda", "mps", "tpu"]
Strategy = Literal["auto", "ddp", "ddp_spawn", "ddp_fork", "ddp_find_unused_parameters_true", "fsdp",
                   "fsdp_cpu_offload", "deepspeed", "deepspeed_stage_1", "deepspeed_stage_2",
                   "deepspeed_stage_2_offload", "deepspeed_stage_3", "deepspeed_stage_3_offload"]


class SparsitySpec(Strict):
    """Sparse weights for the whole training (dynamic sparse training): every Linear and Conv2d
    weight of the network is masked to a share of its entries from the first step. static: the
    random mask stays; set (Mocanu et al. 2018): every `update_interval` steps a `drop_fraction` of
    each layer's active weights, the smallest in magnitude, is dropped and as many are grown at
    random; rigl (Evci et al. 2020): grown where the dense gradient is largest. Grown weights start
    at zero. The drop fraction decays by `schedule` and the topology stops changing after
    `end_fraction` of the training's steps."""

    method: Literal["rigl", "set", "static"]
    density: float = Field(gt=0, le=1, description="The share of the sparse layers' weights that may be non-zero.")
    update_interval: int = Field(100, gt=0, description="Optimizer steps between two topology updates.")
    drop_fraction: float = Field(0.3, gt=0, lt=1, description="The share of a layer's active weights replaced at "
                                                               "the first update.")
    schedule: Literal["cosine", "constant"] = Field(
        "cosine", description="How the drop fraction decays to 0 at `end_fraction` of the training.")
    end_fraction: float = Field(0.75, gt=0, le=1, description="The share of training steps after which the "
                                                               "masks stay as they are.")
    distribution: Literal["uniform", "erk"] = Field(
        "erk", description="Each layer's density: uniform, the same everywhere; erk (Erdős-Rényi-kernel), "
                           "proportional to (sum of the weight's dimensions) / (their product), so small layers "
                           "stay denser, at the same total count.")
    dense_first_layer: bool = Field(
        False, description="Keep the first Linear or Conv layer dense (RigL's convention with uniform densities: the "
                           "input layer is small and sees every input); the others share the density's budget.")


class TrainSpec(Strict):
    max_epochs: int = Field(10, gt=0)
    limit_train_batches: float | int = Field(
        1.0, gt=0, description="Fraction (float) or number (int) of training batches per epoch."
    )
    optimizer: OptimizerSpec = OptimizerSpec()
    scheduler: SchedulerSpec = SchedulerSpec()
    precision: Precision = Field(
        "32-true", description="Lightning's precision: 32-true; 16-mixed or bf16-mixed (autocast, float32 weights); "
                               "16-true or bf16-true (the weights too, half the memory); 64-true.")
    accelerator: Accelerator = "auto"
    devices: int | list[int] | Literal["auto"] = Field(
        1, description="How many devices (-1: all), or which: a list of device indices, e.g. [0, 2].")
    strategy: Strategy = Field(
        "auto", description="Lightning's strategy for several devices or nodes: ddp (one process per device; "
                            "ddp_spawn, ddp_fork: started otherwise), fsdp (weights sharded), deepspeed_* (needs "
                            "the deepspeed package).")
    num_nodes: int = Field(1, gt=0)
    accumulate_grad_batches: int | None = Field(
        None, gt=0, description="Step the optimiser once every N batches, on their averaged gradients (as one batch N "
                                "times larger would, in the memory of one); null: every batch.")
    val_check_interval: float | int | None = Field(
        None, gt=0, description="Validate this often within an epoch: a fraction of it (float) or every N training "
                                "batches (int); null: at each epoch's end.")
    compile: bool | Literal["default", "reduce-overhead", "max-autotune"] | None = Field(
        None, description="torch.compile the model's network before training (true: its default mode, or a "
                          "mode's name); null or false: eager. The first steps pay the compilation.")
    deterministic: bool = True
    log_every_n_steps: int = Field(10, gt=0)
    gradient_clip_norm: float | None = Field(
        None, gt=0,
        description="Rescale the gradients so that their global L2 norm is at most this before each optimizer "
                    "step (Lightning's gradient_clip_val, by norm); null: no clipping. Recurrent networks over "
                    "long sequences are the usual users. Not for kinds that step their optimiser themselves (esn).",
    )
    sparsity: SparsitySpec | None = Field(
        None, description="Train with sparse weights (static, SET or RigL masks on every Linear and Conv2d weight); "
                          "null: dense.")
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

    @field_validator("devices")
    @classmethod
    def _devices(cls, devices):
        if isinstance(devices, int) and (devices == 0 or devices < -1):
            raise ValueError(f"devices takes a count > 0, -1 for all, a list of indices or auto (got {devices})")
        if isinstance(devices, list) and (not devices or min(devices) < 0 or len(set(devices)) != len(devices)):
            raise ValueError(f"a devices list holds distinct device indices >= 0, e.g. [0, 1] (got {devices})")
        return devices

    @field_validator("compile")
    @classmethod
    def _eager_is_null(cls, compile):
        # false and null train the same: both leave the hashes alone.
        return None if compile is False else compile


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
