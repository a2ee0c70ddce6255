"""The experiment spec: one YAML file declares the data, the model and its downstream chain."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Annotated, Literal, Union

from pydantic import Field, ValidationInfo, field_validator, model_validator

from pipeline.data.registry import DATASETS
from pipeline.evaluators import EVALUATORS, DownstreamSpec, default_downstream
from pipeline.models import REGISTRY
from pipeline.spec.components import OptimizerSpec, SchedulerSpec, Strict

DatasetName = Literal[(*DATASETS, "upstream")]  # type: ignore[valid-type]
"""A registered dataset, or `upstream`: the dataset written by the stage of the spec named as
`upstream.data`."""


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


_model_specs = tuple(entry.spec for entry in REGISTRY.values())
ModelSpec = (
    Annotated[Union[_model_specs], Field(discriminator="kind")]  # type: ignore[valid-type]  # noqa: UP007
    if len(_model_specs) > 1
    else _model_specs[0]
)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_REGISTERED = re.compile(r"^models:/[^/\s]+/[^/\s]+$")

UpstreamRole = Literal["encoder", "data"]
"""What a spec takes from an upstream spec. encoder: the trained encoder (a family that takes one
starts from it; without a model the spec's downstream tasks run on it). data: the dataset the
upstream's evaluate stage writes (a downstream task such as export_features), with
`data.dataset: upstream`."""


def is_registered_model(ref: str) -> bool:
    """`models:/<name>/<version or @alias>`: an upstream registered in MLflow's model registry."""
    return bool(_REGISTERED.match(ref))


class ExperimentSpec(Strict):
    name: str = Field(description="Names the outputs: artifacts/<name>/, metrics/<name>/.")
    description: str = ""
    seed: int = Field(0, ge=0)
    seeds: list[int] = Field(
        default_factory=list,
        description="Seeds to run the whole spec over (mean and spread of every figure): what "
                    "`pipeline run --seeds` defaults to and DVC's seeds@<name> stage runs; empty: `seed` only.")
    data: DataSpec = DataSpec()
    upstream: dict[UpstreamRole, str] = Field(  # type: ignore[valid-type]
        default_factory=dict,
        description="Specs this one builds on, by role: {encoder: swav_fmnist} (a spec in the same folder) or "
                    "{encoder: 'models:/name/1'} (a model registered in MLflow by `tracking.register_as`).",
    )
    model: ModelSpec | None = Field(  # type: ignore[valid-type]
        None, description="The model trained by this spec; none when it only runs downstream tasks on an "
                          "upstream encoder.")
    train: TrainSpec = TrainSpec()
    downstream: list[DownstreamSpec] = Field(  # type: ignore[valid-type]
        default_factory=list,
        description="Downstream tasks, run by the evaluate stage in this order; default: every default task "
                    "the model provides for (see `pipeline models`).")
    tracking: TrackingSpec = TrackingSpec()

    @model_validator(mode="before")
    @classmethod
    def _default_downstream(cls, data):
        if isinstance(data, dict) and "downstream" not in data:
            data = {**data, "downstream": downstream_defaults(data)}
        return data

    @field_validator("upstream")
    @classmethod
    def _upstream_names(cls, upstream: dict[str, str]) -> dict[str, str]:
        for role, ref in upstream.items():
            if not (is_registered_model(ref) or (_NAME.match(ref) and ".." not in ref)):
                raise ValueError(f"{role}: {ref!r} is neither a spec name (specs/<name>.yaml) nor a registered "
                                 "MLflow model ('models:/<name>/<version>')")
        return upstream

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: list[int]) -> list[int]:
        if any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
            raise ValueError(f"must be distinct non-negative integers (got {seeds})")
        return seeds

    @model_validator(mode="after")
    def _own_seed_in_seeds(self) -> ExperimentSpec:
        if self.seeds and self.seed not in self.seeds:
            raise ValueError(f"seeds {self.seeds} must include the spec's own seed ({self.seed}): its outputs carry "
                             "the spec's name")
        return self

    @model_validator(mode="after")
    def _chain(self) -> ExperimentSpec:
        if (self.data.dataset == "upstream") != ("data" in self.upstream):
            raise ValueError("data.dataset: upstream and upstream.data go together: the dataset is the one the "
                             "upstream.data spec writes")
        if is_registered_model(self.upstream.get("data", "")):
            raise ValueError("upstream.data names a spec (its evaluate stage writes the dataset), not a registered "
                             "model")
        if self.model is None and "encoder" not in self.upstream:
            raise ValueError("a spec needs a model (`model.kind`) or an upstream encoder to evaluate "
                             "(`upstream: {encoder: <spec>}`)")
        needs_encoder = getattr(self.model, "requires_upstream_encoder", None)
        if needs_encoder and "encoder" not in self.upstream:
            raise ValueError(f"{needs_encoder}: name the spec that trained it, `upstream: {{encoder: <spec>}}`")
        refusal = getattr(self.model, "refuses_training", None)
        if refusal is not None and (why := refusal(self.train)):
            raise ValueError(why)
        if self.model is not None and "encoder" in self.upstream and not REGISTRY[self.model.kind].takes_encoder:
            raise ValueError(f"model kind {self.model.kind!r} trains an encoder of its own and cannot start from "
                             "upstream.encoder; drop `model` to run the downstream tasks on the upstream encoder")
        if self.model is not None and REGISTRY[self.model.kind].single_process and (
                self.train.strategy != "auto" or self.train.num_nodes > 1
                or self.train.devices != 1):
            raise ValueError(f"model kind {self.model.kind!r} trains in one process (its strategy's state is updated "
                             "between fits by that process): set train.strategy: auto, train.devices: 1 and "
                             "train.num_nodes: 1")
        provides = self.provides
        data = data_kind(self.data.dataset)
        if data == "series" and self.data.eval_subset is not None:
            raise ValueError("data.eval_subset: a series' test windows are scored as one contiguous series (free "
                             "running, lagged ridge), which a subset of them would break; remove it")
        for index, task in enumerate(self.downstream):
            entry = EVALUATORS[task.kind]
            missing = entry.needs - provides
            if missing:
                what = f"model kind {self.model.kind!r}" if self.model else "an upstream encoder"
                raise ValueError(f"downstream.{index}: {task.kind!r} needs a model that provides "
                                 f"{', '.join(sorted(missing))}; {what} provides {', '.join(sorted(provides))}")
            if data is not None and entry.data not in (data, "any"):
                needed = {"labelled": "class labels", "series": "a series to forecast (a `target` field)",
                          "video": "videos (frame sequences)", "image-text": "captioned images"}[entry.data]
                raise ValueError(f"downstream.{index}: {task.kind!r} needs {needed}, which dataset "
                                 f"{self.data.dataset!r} does not have")
        return self

    @property
    def provides(self) -> frozenset[str]:
        """What the trained model offers downstream tasks (only an encoder when it is an upstream's)."""
        return REGISTRY[self.model.kind].provides if self.model is not None else frozenset({"encoder"})

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
        if data is None or model is None or data.dataset == "upstream":
            # `data` itself was invalid (that error is reported instead), or the dataset is another
            # spec's: checked where the specs are loaded together.
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


OPERATIONAL_TRAIN = ("checkpoint_min_interval_s",)
"""`train` settings that change how often a training saves itself, not what it computes: left out
of both hashes, so changing them keeps a finished or unfinished training current."""


def digest(body: dict) -> str:
    """The hash of a spec section as plain data. Settings that are null are left out: an optional
    setting (off by default) added to the schema later changes no existing spec's hash, so the
    trainings and evaluations made before it stay current."""

    def present(value):
        if isinstance(value, dict):
            return {key: present(sub) for key, sub in value.items() if sub is not None}
        if isinstance(value, list):
            return [present(sub) for sub in value]
        return value

    canonical = json.dumps(present(body), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def spec_hash(spec: ExperimentSpec) -> str:
    """Identifies a configuration: equal for two specs that would compute the same thing,
    whatever their name, description, tracking destination or the seeds a sweep of it runs (each
    run's own `seed` counts)."""
    left_out = {"name": True, "description": True, "tracking": True, "seeds": True, "train": set(OPERATIONAL_TRAIN)}
    return digest(spec.model_dump(mode="json", exclude=left_out))


def data_kind(dataset: str | None) -> str | None:
    """"series" for a dataset to forecast (it has a `target` field), "video" for frame sequences,
    "image-text" for captioned images, "labelled" for one with class labels, "unlabelled"
    otherwise; None where it is not known here (another spec's dataset)."""
    source = DATASETS.get(dataset or "")
    if source is None:
        return None
    if source.modality in ("video", "image-text"):
        return source.modality
    if source.field("target") is not None:
        return "series"
    return "labelled" if source.labelled else "unlabelled"


def downstream_defaults(data: dict) -> list[dict]:
    """The downstream tasks of a spec (as plain data) that lists none: its model's defaults for
    its data."""
    model = data.get("model")
    kind = model.get("kind") if isinstance(model, dict) else getattr(model, "kind", None)
    section = data.get("data")
    dataset = section.get("dataset") if isinstance(section, dict) else getattr(section, "dataset", None)
    kind_of_data = data_kind(dataset if dataset is not None else DataSpec().dataset) or "labelled"
    return default_downstream(REGISTRY[kind].provides if kind in REGISTRY else frozenset({"encoder"}), kind_of_data)


def training_hash(spec: ExperimentSpec) -> str:
    """Identifies what the training stage computes: the seed, data, model, training and upstream
    sections. Downstream tasks, the probes' data and the tracking destination do not change the
    trained weights, so changing them keeps a pretraining current (and resumable)."""
    downstream_only = {"probe_subset", "eval_subset"}
    return digest(spec.model_dump(mode="json", include={"seed", "data", "model", "train", "upstream"},
                                  exclude={"data": downstream_only, "train": set(OPERATIONAL_TRAIN)}))


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
