"""The experiment spec: one YAML file declares the data, the model and its downstream chain."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Annotated, Literal, Union

from pydantic import Field, ValidationInfo, field_validator

from pipeline.data.registry import DATASETS
from pipeline.models import REGISTRY
from pipeline.spec.components import OptimizerSpec, SchedulerSpec, Strict

DatasetName = Literal[tuple(DATASETS)]  # type: ignore[valid-type]


class DataSpec(Strict):
    dataset: DatasetName = "fashion_mnist"  # type: ignore[valid-type]
    train_subset: int | None = Field(
        None, gt=0,
        description="Pretrain on only this many training images (seeded); null: all of them.",
    )
    probe_subset: int | None = Field(
        None, gt=0,
        description="Train downstream probes on only this many training images; null: all.",
    )
    val_fraction: float = Field(
        0.1, ge=0, lt=1, description="Fraction of the training images held out for validation."
    )
    batch_size: int = Field(256, gt=0)
    num_workers: int = Field(0, ge=0)


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
    checkpoint_every_n_steps: int | None = Field(
        None, gt=0,
        description="Write checkpoints/last.ckpt every N optimizer steps; null: at each epoch end.",
    )


class LinearProbeSpec(Strict):
    """Logistic regression on frozen features, trained to convergence by full-batch L-BFGS."""

    kind: Literal["linear_probe"] = "linear_probe"
    weight_decays: list[float] = Field(
        [1e-3, 1e-4, 1e-5],
        min_length=1,
        description="L2 strengths tried; the one with the best validation accuracy is kept.",
    )
    max_iter: int = Field(150, gt=0, description="L-BFGS iterations at most, per L2 strength.")


class KnnSpec(Strict):
    """Weighted k-nearest-neighbour vote with cosine similarity on frozen features."""

    kind: Literal["knn"] = "knn"
    k: int = Field(20, gt=0)
    temperature: float = Field(0.07, gt=0, description="Votes are weighted by exp(sim / T).")


DownstreamSpec = Annotated[LinearProbeSpec | KnnSpec, Field(discriminator="kind")]


class TrackingSpec(Strict):
    uri: str | None = Field(
        None,
        description="MLflow tracking URI; null: $MLFLOW_TRACKING_URI or the project's sqlite store.",
    )
    experiment: str | None = Field(None, description="MLflow experiment; null: the spec name.")


_model_specs = tuple(entry.spec for entry in REGISTRY.values())
ModelSpec = (
    Annotated[Union[_model_specs], Field(discriminator="kind")]  # type: ignore[valid-type]  # noqa: UP007
    if len(_model_specs) > 1
    else _model_specs[0]
)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class ExperimentSpec(Strict):
    name: str = Field(description="Names the outputs: artifacts/<name>/, metrics/<name>/.")
    description: str = ""
    seed: int = Field(0, ge=0)
    data: DataSpec = DataSpec()
    model: ModelSpec  # type: ignore[valid-type]
    train: TrainSpec = TrainSpec()
    downstream: list[DownstreamSpec] = Field(  # type: ignore[valid-type]
        default_factory=lambda: [LinearProbeSpec(), KnnSpec()]
    )
    tracking: TrackingSpec = TrackingSpec()

    @field_validator("name")
    @classmethod
    def _safe_name(cls, name: str) -> str:
        if not _NAME.match(name) or ".." in name:
            raise ValueError(
                f"must be letters, digits, '_', '-' or '.', not starting with a symbol and "
                f"without '..' (got {name!r}): it names folders under artifacts/"
            )
        return name

    @field_validator("model")
    @classmethod
    def _model_takes_the_data(cls, model, info: ValidationInfo):
        """The model must take the dataset's kind of input, and its shape (e.g. a patch grid
        must tile the images): said now, before any compute. (`data` is validated first.)"""
        data = info.data.get("data")
        if data is None:  # `data` itself was invalid: that error is reported instead
            return model
        source = DATASETS[data.dataset]
        takes = REGISTRY[model.kind].modalities
        if source.modality not in takes:
            fitting = sorted(name for name, d in DATASETS.items() if d.modality in takes)
            raise ValueError(
                f"kind {model.kind!r} takes {' or '.join(takes)} data, but data.dataset "
                f"{source.name!r} holds {source.modality}s; datasets it can take: {', '.join(fitting)}")
        check = getattr(model, "check_input", None)
        if check is not None:
            try:
                check(source.input_shape)
            except ValueError as err:
                raise ValueError(f"does not fit {source.name} ({source.modality}s of shape "
                                 f"{list(source.input_shape)}): {err}") from None
        return model


def spec_hash(spec: ExperimentSpec) -> str:
    """Identifies a configuration: equal for two specs that would compute the same thing,
    whatever their name, description or tracking destination."""
    body = spec.model_dump(mode="json", exclude={"name", "description", "tracking"})
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def flatten(spec: ExperimentSpec) -> dict[str, str]:
    """The spec as flat `a.b.c -> value` pairs (MLflow params)."""
    out: dict[str, str] = {}

    def walk(prefix: str, value: object) -> None:
        if isinstance(value, dict):
            for key, sub in value.items():
                walk(f"{prefix}.{key}" if prefix else key, sub)
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for i, sub in enumerate(value):
                walk(f"{prefix}.{i}", sub)
        else:
            out[prefix] = json.dumps(value) if not isinstance(value, str) else value

    walk("", spec.model_dump(mode="json"))
    return out
