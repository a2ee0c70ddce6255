"""The one way a stage uses a trained model: a finished spec's weights, the resolved spec that
made them and its MLflow run, read from the files its training stage wrote (the files DVC tracks)
or from MLflow's model registry.

A spec's own evaluation reads its own training this way; a spec that names `upstream:
{encoder: other}` reads other's. Every refusal is one line naming the spec and what to run.
"""

from __future__ import annotations

import copy
import json
import pickle
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from pipeline import paths
from pipeline.errors import PipelineError
from pipeline.spec.experiment import ExperimentSpec, is_registered_model, training_hash

WEIGHTS = ("model.pt", "encoder.pt", "spec.yaml", "run.json")
"""What a training stage leaves for others (artifacts/<name>/pretrain/, and an MLflow registered
model's `weights/` folder)."""


@dataclass(frozen=True)
class Finished:
    """A spec whose training finished: where its weights are and how to rebuild its model."""

    name: str
    spec: ExperimentSpec
    run_id: str
    tracking_uri: str | None
    folder: Path
    input_shape: tuple[int, ...]
    num_classes: int
    upstream: dict = field(default_factory=dict)
    """Role -> the upstream run it was trained from."""

    def models(self):
        """(trained model, the same model as initialised before training, seeded as it was):
        the whole model from model.pt, its encoder from encoder.pt (the file others read)."""
        import pytorch_lightning as pl
        import torch

        from pipeline import plugins

        extra = {}
        if "encoder" in self.spec.upstream and plugins.models()[self.spec.model.kind].takes_encoder:
            # Built on another spec's encoder: the same architecture again (its weights are then
            # this spec's own, from model.pt).
            extra["encoder"] = upstream(self.spec, "encoder").models()[0].encoder
        pl.seed_everything(self.spec.seed, workers=True, verbose=False)
        initial = plugins.build_model(self.spec, self.input_shape, self.num_classes, **extra)
        trained = copy.deepcopy(initial)
        for name, module in (("model.pt", trained), ("encoder.pt", trained.encoder)):
            try:
                module.load_state_dict(torch.load(self.folder / name, map_location="cpu", weights_only=True))
            except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as err:
                raise PipelineError(f"{self.folder / name} is unreadable ({err}): rerun "
                                    f"`pipeline pretrain specs/{self.name}.yaml`") from None
        return trained.eval(), initial.eval()


def _record(folder: Path, name: str) -> dict:
    import json

    try:
        return json.loads((folder / "run.json").read_text())
    except FileNotFoundError:
        raise PipelineError(f"{name} has not been trained: no {folder / 'run.json'}; run "
                            f"`pipeline pretrain specs/{name}.yaml` (or `dvc repro pretrain@{name}`)") from None
    except (OSError, ValueError) as err:
        raise PipelineError(f"{folder / 'run.json'} is unreadable ({err}): rerun "
                            f"`pipeline pretrain specs/{name}.yaml`") from None


def made_by(folder: Path, record: dict) -> str | None:
    """The training hash of the configuration that made the finished training in `folder`, as this
    version of the pipeline hashes it: that of the spec saved with it (spec.yaml), so a change of
    how hashes are computed, or an optional setting added to the schema, leaves it current; the
    hash its run.json recorded where that spec cannot be read."""
    from pipeline.spec.load import SpecError, load_text

    saved = folder / "spec.yaml"
    if record.get("finished") and saved.is_file():
        try:  # as a spec on its own: its upstream specs are checked where they are used
            return training_hash(load_text(saved.read_text(encoding="utf-8"), str(saved)))
        except (SpecError, OSError, UnicodeDecodeError):
            pass
    return record.get("training_hash")


def finished(spec: ExperimentSpec, needed_by: str | None = None) -> Finished:
    """The finished training of `spec` (its resolved configuration, overrides included) from
    artifacts/<name>/pretrain/. Refused when it was never run, did not finish, or was made by
    another configuration of the spec."""
    name = spec.name
    folder = paths.artifacts_dir(name) / "pretrain"
    for_whom = f" ({needed_by} builds on it)" if needed_by else ""
    if spec.model is None:
        raise PipelineError(f"{name} trains no model of its own{for_whom}: it has nothing to offer as an upstream")
    record = _record(folder, name)
    if not record.get("finished"):
        raise PipelineError(f"the training of {name} in {folder} did not finish{for_whom}: continue it with "
                            f"`pipeline pretrain specs/{name}.yaml --resume`")
    if "training_hash" not in record:
        raise PipelineError(f"{folder} was made by an earlier version of the pipeline{for_whom}: rerun "
                            f"`pipeline pretrain specs/{name}.yaml`")
    if (made := made_by(folder, record)) != training_hash(spec):
        raise PipelineError(f"{folder} was made by another configuration of {name}{for_whom} (training hash "
                            f"{made}, the spec now {training_hash(spec)}): rerun "
                            f"`pipeline pretrain specs/{name}.yaml`")
    return Finished(name, spec, record["run_id"], record.get("tracking_uri"), folder,
                    tuple(record["input_shape"]), int(record["num_classes"]), record.get("upstream", {}))


def upstream(spec: ExperimentSpec, role: str, folder: Path | None = None) -> Finished:
    """The finished spec that `spec` names as `upstream.<role>`: a spec of `folder` (default
    the project's specs/), or a model registered in MLflow."""
    from pipeline.spec.load import SpecError, load

    ref = spec.upstream[role]
    if is_registered_model(ref):
        return registered(ref, spec)
    path = (folder or paths.project_root() / "specs") / f"{ref}.yaml"
    try:
        upstream_spec = load(path)
    except SpecError as err:
        raise PipelineError(f"{spec.name}: upstream.{role} {ref!r} cannot be loaded: {err.problems[0]}") from None
    return finished(upstream_spec, needed_by=spec.name)


def encoder_source(spec: ExperimentSpec, folder: Path | None = None) -> Finished:
    """Where the encoder that `spec`'s downstream tasks read comes from: its own training, or
    the upstream encoder when the spec trains nothing of its own."""
    return finished(spec) if spec.model is not None else upstream(spec, "encoder", folder)


@dataclass(frozen=True)
class Written:
    """A dataset written by another spec's evaluate stage (see pipeline.data.written)."""

    name: str
    """The spec that wrote it."""
    run_id: str
    """Its evaluate run."""
    source: object
    """The DatasetSource describing it (fields, files and their sha256)."""
    folder: Path


def written_dataset(spec: ExperimentSpec, folder: Path | None = None) -> Written:
    """The dataset `spec` reads from its `upstream.data` spec; refused when that spec's evaluate
    stage has not written it, or wrote it under another configuration."""
    from pipeline.data import written
    from pipeline.spec.experiment import spec_hash
    from pipeline.spec.load import SpecError, load

    ref = spec.upstream["data"]
    path = (folder or paths.project_root() / "specs") / f"{ref}.yaml"
    try:
        producer = load(path)
    except SpecError as err:
        raise PipelineError(f"{spec.name}: upstream.data {ref!r} cannot be loaded: {err.problems[0]}") from None
    evaluated = paths.metrics_dir(ref) / "evaluate.json"
    run = f"run `pipeline evaluate specs/{ref}.yaml` (or `dvc repro evaluate@{ref}`)"
    try:
        record = json.loads(evaluated.read_text())
    except (OSError, ValueError):
        raise PipelineError(f"{ref} has not written its dataset ({spec.name} reads it): {run}") from None
    if record.get("spec_hash") != spec_hash(producer):
        raise PipelineError(f"the dataset of {ref} was written by another configuration of it ({spec.name} reads "
                            f"it): {run} again")
    out = paths.artifacts_dir(ref) / "evaluate" / "dataset"
    source = written.source(out)
    if written.writer(out) != record["run_id"]:
        raise PipelineError(f"the dataset in {out} was not written by {ref}'s last finished evaluation "
                            f"({spec.name} reads it): {run} again")
    return Written(ref, record["run_id"], source, out)


def lineage(spec: ExperimentSpec, folder: Path | None = None) -> dict[str, Finished | Written]:
    """Every upstream of `spec` by role, resolved (each must be finished)."""
    return {role: written_dataset(spec, folder) if role == "data" else upstream(spec, role, folder)
            for role in spec.upstream}


# ---------------------------------------------------------------- MLflow model registry


def register(run, spec: ExperimentSpec, folder: Path, name: str, record: dict) -> str:
    """Log the training's weights (with `record`, its finished run.json) as the run's `weights/`
    artifacts and register them as a new version of the MLflow model `name`; returns its
    reference `models:/<name>/<version>`."""
    import json

    import mlflow

    client = run.client
    with tempfile.TemporaryDirectory() as scratch:
        (Path(scratch) / "run.json").write_text(json.dumps(record, indent=2, sort_keys=True))
        for file in WEIGHTS:
            run.log_artifact(Path(scratch) / file if file == "run.json" else folder / file, "weights")
    try:
        client.create_registered_model(name, description=f"Trained by spec {spec.name}")
    except mlflow.exceptions.MlflowException as err:
        if "already exists" not in str(err).lower() and "RESOURCE_ALREADY_EXISTS" not in str(err):
            raise
    source = f"{client.get_run(run.run_id).info.artifact_uri}/weights"
    version = client.create_model_version(name, source, run_id=run.run_id,
                                          tags={"spec_name": spec.name, "training_hash": training_hash(spec)})
    return f"models:/{name}/{version.version}"


def registered(ref: str, spec: ExperimentSpec) -> Finished:
    """A model registered in MLflow (`models:/<name>/<version>` or `models:/<name>/@<alias>`),
    its weights downloaded once into artifacts/.registry/<name>/<version>/."""
    import json

    import mlflow

    from pipeline.spec.load import SpecError, load_text
    from pipeline.tracking import tracking_uri

    name, which = ref.removeprefix("models:/").split("/", 1)
    uri = tracking_uri(spec)
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    try:
        version = (client.get_model_version_by_alias(name, which[1:]) if which.startswith("@")
                   else client.get_model_version(name, which))
    except mlflow.exceptions.MlflowException as err:
        raise PipelineError(f"{spec.name}: upstream {ref} is not in the model registry of {uri} "
                            f"({str(err).splitlines()[0]}); register it with `tracking.register_as` "
                            "in the spec that trains it") from None
    folder = paths.project_root() / "artifacts" / ".registry" / name / str(version.version)
    if not all((folder / file).is_file() for file in WEIGHTS):
        # Downloaded beside the target, then renamed: a partial download is never used.
        folder.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=folder.parent, prefix=f".{version.version}.") as scratch:
            client.download_artifacts(version.run_id, "weights", scratch)
            shutil.rmtree(folder, ignore_errors=True)
            (Path(scratch) / "weights").rename(folder)
    record = json.loads((folder / "run.json").read_text())
    try:
        made_by = load_text((folder / "spec.yaml").read_text(), f"{ref} spec.yaml")
    except SpecError as err:
        raise PipelineError(f"{ref}: its spec no longer validates ({err.problems[0]}); retrain it with "
                            "this version of the pipeline") from None
    return Finished(made_by.name, made_by, version.run_id, uri, folder, tuple(record["input_shape"]),
                    int(record["num_classes"]))
