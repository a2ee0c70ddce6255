"""The experiment spec: one YAML file declares the data, the model and its downstream chain.

`ExperimentSpec` is built from the plugin registry (`pipeline.plugins`): its `model` is the union of
every registered model kind, its `downstream` the union of every registered task. It is built when
first asked for (`from pipeline.spec.experiment import ExperimentSpec`, or `experiment_spec()`),
after every plugin of the entry points is loaded, and again after a plugin is registered at run
time; the checks below read the registry, never a family.
"""

from __future__ import annotations

import hashlib
import json
import re
from functools import reduce
from operator import or_
from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from pipeline import plugins
from pipeline.spec.components import (  # noqa: F401  (DataSpec, TrainSpec, TrackingSpec: imported from here too)
    UPSTREAM,
    DataSpec,
    Strict,
    TrackingSpec,
    TrainSpec,
)


def _union(specs: list[type], tag: str):
    return Annotated[reduce(or_, specs), Field(discriminator=tag)] if len(specs) > 1 else specs[0]


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


class _Experiment(Strict):
    """The checks of an experiment spec; its fields are declared by `experiment_spec`."""

    @model_validator(mode="before")
    @classmethod
    def _default_downstream(cls, data):
        if isinstance(data, dict) and "downstream" not in data:
            data = {**data, "downstream": downstream_defaults(data)}
        return data

    @field_validator("upstream", check_fields=False)
    @classmethod
    def _upstream_names(cls, upstream: dict[str, str]) -> dict[str, str]:
        for role, ref in upstream.items():
            if not (is_registered_model(ref) or (_NAME.match(ref) and ".." not in ref)):
                raise ValueError(f"{role}: {ref!r} is neither a spec name (specs/<name>.yaml) nor a registered "
                                 "MLflow model ('models:/<name>/<version>')")
        return upstream

    @field_validator("seeds", check_fields=False)
    @classmethod
    def _distinct_seeds(cls, seeds: list[int]) -> list[int]:
        if any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
            raise ValueError(f"must be distinct non-negative integers (got {seeds})")
        return seeds

    @model_validator(mode="after")
    def _own_seed_in_seeds(self) -> _Experiment:
        if self.seeds and self.seed not in self.seeds:
            raise ValueError(f"seeds {self.seeds} must include the spec's own seed ({self.seed}): its outputs carry "
                             "the spec's name")
        return self

    @model_validator(mode="after")
    def _chain(self) -> _Experiment:
        if (self.data.dataset == UPSTREAM) != ("data" in self.upstream):
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
        entry = plugins.models()[self.model.kind] if self.model is not None else None
        if entry is not None and "encoder" in self.upstream and not entry.takes_encoder:
            raise ValueError(f"model kind {self.model.kind!r} trains an encoder of its own and cannot start from "
                             "upstream.encoder; drop `model` to run the downstream tasks on the upstream encoder")
        if entry is not None and entry.single_process and (
                self.train.strategy != "auto" or self.train.num_nodes > 1
                or self.train.devices != 1):
            raise ValueError(f"model kind {self.model.kind!r} trains in one process (its strategy's state is updated "
                             "between fits by that process): set train.strategy: auto, train.devices: 1 and "
                             "train.num_nodes: 1")
        if entry is not None and entry.cpu_only and self.train.accelerator not in ("auto", "cpu"):
            raise ValueError(f"model kind {self.model.kind!r} runs on the CPU (a GPU would not speed it up): set "
                             f"train.accelerator: cpu or auto, not {self.train.accelerator}")
        provides = self.provides
        data = data_kind(self.data.dataset)
        if data == "series" and self.data.eval_subset is not None:
            raise ValueError("data.eval_subset: a series' test windows are scored as one contiguous series (free "
                             "running, lagged ridge), which a subset of them would break; remove it")
        registered = plugins.tasks()
        for index, task in enumerate(self.downstream):
            needs = registered[task.kind]
            lacking = plugins.missing(provides, needs.needs)
            if lacking:
                what = f"model kind {self.model.kind!r}" if self.model else "an upstream encoder"
                names = ", ".join(map(plugins.capability_name, provides))
                raise ValueError(f"downstream.{index}: {task.kind!r} needs a model that provides "
                                 f"{', '.join(map(plugins.capability_name, lacking))}; {what} provides {names}")
            if data is not None and needs.data not in (data, "any"):
                needed = {"labelled": "class labels", "series": "a series to forecast (a `target` field)",
                          "video": "videos (frame sequences)", "image-text": "captioned images"}[needs.data]
                raise ValueError(f"downstream.{index}: {task.kind!r} needs {needed}, which dataset "
                                 f"{self.data.dataset!r} does not have")
        return self

    @property
    def provides(self) -> tuple[type, ...]:
        """The capabilities the trained model offers downstream tasks (only an encoder when it is an
        upstream's)."""
        return provided(self.model.kind if self.model is not None else None)

    @field_validator("name", check_fields=False)
    @classmethod
    def _safe_name(cls, name: str) -> str:
        if not _NAME.match(name) or ".." in name:
            raise ValueError(
                f"must be letters, digits, '_', '-' or '.', not starting with a symbol and "
                f"without '..' (got {name!r}): it names folders under artifacts/"
            )
        return name

    @field_validator("model", check_fields=False)
    @classmethod
    def _model_takes_the_data(cls, model, info: ValidationInfo):
        """The model must take the dataset's kind of input, and its shape (e.g. a patch grid
        must tile the images): said now, before any compute. (`data` is validated first.)"""
        data = info.data.get("data")
        if data is None or model is None or data.dataset == UPSTREAM:
            # `data` itself was invalid (that error is reported instead), or the dataset is another
            # spec's: checked where the specs are loaded together.
            return model
        datasets = plugins.datasets()
        source = datasets[data.dataset]
        takes = plugins.models()[model.kind].modalities
        if source.modality not in takes:
            fitting = sorted(name for name, d in datasets.items() if d.modality in takes)
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


def spec_hash(spec) -> str:
    """Identifies a configuration: equal for two specs that would compute the same thing,
    whatever their name, description, tracking destination or the seeds a sweep of it runs (each
    run's own `seed` counts)."""
    left_out = {"name": True, "description": True, "tracking": True, "seeds": True, "train": set(OPERATIONAL_TRAIN)}
    return digest(spec.model_dump(mode="json", exclude=left_out))


def data_kind(dataset: str | None) -> str | None:
    """"series" for a dataset to forecast (it has a `target` field), "video" for frame sequences,
    "image-text" for captioned images, "labelled" for one with class labels, "unlabelled"
    otherwise; None where it is not known here (another spec's dataset)."""
    source = plugins.datasets().get(dataset or "")
    if source is None:
        return None
    if source.modality in ("video", "image-text"):
        return source.modality
    if source.field("target") is not None:
        return "series"
    return "labelled" if source.labelled else "unlabelled"


def provided(kind: str | None) -> tuple[type, ...]:
    """The capabilities a model kind provides; on an upstream encoder (no kind), only an encoder."""
    from pipeline.capabilities import Encoder

    entry = plugins.models().get(kind) if kind is not None else None
    return entry.provides if entry is not None else (Encoder,)


def downstream_defaults(data: dict) -> list[dict]:
    """The downstream tasks of a spec (as plain data) that lists none: its model's defaults for
    its data (the model entry's own list where it has one)."""
    model = data.get("model")
    kind = model.get("kind") if isinstance(model, dict) else getattr(model, "kind", None)
    section = data.get("data")
    dataset = section.get("dataset") if isinstance(section, dict) else getattr(section, "dataset", None)
    kind_of_data = data_kind(dataset if dataset is not None else DataSpec().dataset) or "labelled"
    entry = plugins.models().get(kind) if isinstance(kind, str) else None
    if entry is not None and entry.default_tasks is not None:
        return entry.default_tasks(kind_of_data)
    return plugins.default_tasks(provided(kind if entry is not None else None), kind_of_data)


def training_hash(spec) -> str:
    """Identifies what the training stage computes: the seed, data, model, training and upstream
    sections. Downstream tasks, the probes' data and the tracking destination do not change the
    trained weights, so changing them keeps a pretraining current (and resumable)."""
    downstream_only = {"probe_subset", "eval_subset"}
    return digest(spec.model_dump(mode="json", include={"seed", "data", "model", "train", "upstream"},
                                  exclude={"data": downstream_only, "train": set(OPERATIONAL_TRAIN)}))


def task_datasets(task) -> tuple[str, ...]:
    """The registered datasets a task reads besides its spec's own (a corpus to vokenize, a text
    task to probe; its spec's `datasets()`): fetched with the spec's, and dependencies of its DVC
    stages."""
    datasets = getattr(task, "datasets", None)
    return datasets() if datasets is not None else ()


def model_datasets(model) -> tuple[str, ...]:
    """The registered datasets a model's training reads besides its spec's own (outliers to expose
    it to; its spec section's `datasets()`): fetched with the spec's, and dependencies of its
    pretrain stage."""
    datasets = getattr(model, "datasets", None)
    return datasets() if datasets is not None else ()


def task_keys(spec) -> list[str]:
    """The name each downstream task's results go under: its kind, numbered where a kind repeats."""
    kinds = [task.kind for task in spec.downstream]
    return [kind if kinds.count(kind) == 1 else f"{kind}_{kinds[:i].count(kind) + 1}" for i, kind in enumerate(kinds)]


def flatten(spec) -> dict[str, str]:
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


@plugins.cached
def experiment_spec() -> type:
    """The experiment spec class over the model kinds and tasks registered now."""
    model_spec = _union([entry.spec_class() for entry in plugins.models().values()], "kind")
    downstream_spec = _union([entry.spec for entry in plugins.tasks().values()], "kind")

    class ExperimentSpec(_Experiment):
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
        model: model_spec | None = Field(  # type: ignore[valid-type]
            None, description="The model trained by this spec; none when it only runs downstream tasks on an "
                              "upstream encoder.")
        train: TrainSpec = TrainSpec()
        downstream: list[downstream_spec] = Field(  # type: ignore[valid-type]
            default_factory=list,
            description="Downstream tasks, run by the evaluate stage in this order; default: every default task "
                        "the model provides for (see `pipeline models`).")
        tracking: TrackingSpec = TrackingSpec()

    # Named as the module attribute that serves it, so that a spec pickles (a seed run in another
    # process) and unpickles as this module's ExperimentSpec.
    ExperimentSpec.__qualname__ = "ExperimentSpec"
    return ExperimentSpec


def __getattr__(name: str):
    if name == "ExperimentSpec":
        return experiment_spec()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
