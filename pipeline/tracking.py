"""The only module that talks to MLflow.

Default store: sqlite at <project root>/mlflow.db, artifacts under <project root>/mlartifacts,
whatever the working directory (in the copy where DVC runs a queued or `--temp` experiment, the
project's own: `paths.store_root`). `tracking.uri` in a spec, or $MLFLOW_TRACKING_URI, points it
at a team server instead.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from pipeline import paths, plugins
from pipeline.data.source import DatasetSource
from pipeline.distributed import is_secondary
from pipeline.errors import PipelineError
from pipeline.provenance import git_state
from pipeline.spec.experiment import ExperimentSpec, flatten, spec_hash

log = logging.getLogger(__name__)
PARAM_LIMIT = 6000


def tracking_uri(spec: ExperimentSpec | None = None) -> str:
    if spec is not None and spec.tracking.uri:
        return spec.tracking.uri
    return os.environ.get("MLFLOW_TRACKING_URI") or paths.default_tracking_uri()


def experiment_name(spec: ExperimentSpec) -> str:
    return spec.tracking.experiment or spec.name


def _experiment_id(client: MlflowClient, name: str, uri: str) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = None
    if uri == paths.default_tracking_uri():
        location = paths.default_artifact_root().as_uri()
    try:
        return client.create_experiment(name, artifact_location=location)
    except mlflow.exceptions.MlflowException:
        # Created meanwhile by a concurrent run.
        return client.get_experiment_by_name(name).experiment_id


@contextlib.contextmanager
def _store_lock(uri: str) -> Iterator[None]:
    """Serialises opening a sqlite store across processes: MLflow creates and migrates the
    schema when it first opens a file, and two processes doing that at once (`dvc repro --jobs`
    on a new project) crash. Other stores need no lock."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    import fcntl

    lock_path = Path(uri.removeprefix("sqlite:///").split("?")[0] + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def open_store(uri: str, experiment: str) -> tuple[MlflowClient, str]:
    """(client, experiment id), creating the store and the experiment if needed."""
    with _store_lock(uri):
        client = MlflowClient(tracking_uri=uri)
        return client, _experiment_id(client, experiment, uri)


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for package in ("torch", "pytorch-lightning", "lightly", "mlflow", "pipeline"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = "not installed"
    return out


def data_tags(source: DatasetSource) -> dict[str, str]:
    """The checksums of the data files a run reads: with the spec, the git commit and the
    package versions, what it takes to reproduce the run."""
    return {f"data.{source.name}.{file.name}.sha256": file.sha256 for file in source.files}


@dataclass
class Run:
    """An MLflow run of one stage, open while the stage works."""

    client: MlflowClient
    run_id: str
    experiment_id: str
    uri: str

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        now = int(time.time() * 1000)
        batch = [Metric(key, float(value), now, step or 0) for key, value in metrics.items()]
        for start in range(0, len(batch), 500):
            self.client.log_batch(self.run_id, metrics=batch[start:start + 500])

    def set_tags(self, tags: dict[str, str]) -> None:
        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), folder)

    def lightning_logger(self, resumed: bool = False, step_offset: int = 0, write_every_s: float = 5.0):
        """Lightning's MLflow logger writing to this run (`BatchedRunLogger`), at steps after
        `step_offset` (a training's later phases continue its curves). A `resumed` run replays the
        steps between its checkpoint and the interruption, whose points the run already holds:
        those are not logged twice, so every metric's history reads as that of an uninterrupted
        run."""
        from pipeline.lightning_logger import BatchedRunLogger

        held = ({(key, m.step) for key in self.client.get_run(self.run_id).data.metrics
                 for m in self.client.get_metric_history(self.run_id, key)} if resumed else set())
        return BatchedRunLogger(held=held, step_offset=step_offset, write_every_s=write_every_s,
                                tracking_uri=self.uri, run_id=self.run_id, log_model=False,
                                experiment_name=self.client.get_experiment(self.experiment_id).name)


class _SilentRun:
    """Stands in for a Run on secondary DDP processes: logs nothing."""

    run_id = None
    uri = None

    def log_metrics(self, *args, **kwargs) -> None: ...
    def set_tags(self, *args, **kwargs) -> None: ...
    def log_artifact(self, *args, **kwargs) -> None: ...

    def lightning_logger(self, resumed: bool = False, step_offset: int = 0):
        return False


@contextlib.contextmanager
def stage_run(spec: ExperimentSpec, stage: str, spec_path: Path | None, upstream: dict | None = None,
              resume_run_id: str | None = None) -> Iterator[Run]:
    """One MLflow run for one stage: the flattened spec as params; tags for the spec hash, git
    commit, stage and the runs it builds on (`upstream`: role -> pipeline.upstream.Finished, the
    role "training" for a spec's own training); the spec file as an artifact. Ends FINISHED,
    FAILED (with the error as a tag) or KILLED (Ctrl-C): never left RUNNING. With
    `resume_run_id`, that run is reopened and continued instead."""
    if is_secondary():  # DDP's other ranks train; rank 0 alone writes to MLflow
        yield _SilentRun()  # type: ignore[misc]
        return
    uri = tracking_uri(spec)
    try:
        client, experiment_id = open_store(uri, experiment_name(spec))
    except mlflow.exceptions.MlflowException as err:
        raise PipelineError(f"cannot reach the MLflow store {uri}: {err}") from None
    commit, dirty = git_state(paths.project_root())
    tags = {
        "mlflow.runName": f"{spec.name}/{stage}",
        "stage": stage,
        "spec_name": spec.name,
        "spec_hash": spec_hash(spec),
        "model_kind": spec.model.kind if spec.model else "-",
        "git_commit": commit,
        "git_dirty": dirty,
        "mlflow.source.git.commit": commit,
        **{f"version.{k}": v for k, v in _versions().items()},
    }
    written = (upstream or {}).get("data")
    tags.update(data_tags(written.source if written is not None else plugins.datasets()[spec.data.dataset]))
    notes = []
    for role, source in (upstream or {}).items():
        tags[f"upstream.{role}.run_id"] = source.run_id
        tags[f"upstream.{role}.spec"] = source.name
        notes.append(f"{role}: run {source.run_id} of spec {source.name}")
    if upstream:
        # The run whose encoder this stage reads (its own training's, or the upstream encoder's).
        encoder_source = upstream.get("training") or upstream.get("encoder") or next(iter(upstream.values()))
        tags["upstream_run_id"] = encoder_source.run_id
        tags["mlflow.note.content"] = "Builds on " + "; ".join(notes) + "."
    if resume_run_id:
        try:
            client.update_run(resume_run_id, status="RUNNING")
        except mlflow.exceptions.MlflowException as err:
            raise PipelineError(f"cannot resume MLflow run {resume_run_id}: {err}") from None
        run = Run(client, resume_run_id, experiment_id, uri)
        run.set_tags({"resumed": "true", "git_commit_at_resume": commit})
    else:
        created = client.create_run(experiment_id, tags=tags)
        run = Run(client, created.info.run_id, experiment_id, uri)
        params = [Param(k, v[:PARAM_LIMIT]) for k, v in flatten(spec).items()]
        for start in range(0, len(params), 100):
            client.log_batch(run.run_id, params=params[start:start + 100])
        if spec_path is not None and Path(spec_path).is_file():
            run.log_artifact(Path(spec_path), "spec")
    # MLflow's set_tracking_uri (Lightning's logger calls it) exports MLFLOW_TRACKING_URI to the
    # whole process and its children: put it back, so one stage's store never leaks into the next.
    previous_env = os.environ.get("MLFLOW_TRACKING_URI")
    try:
        yield run
    except KeyboardInterrupt:
        client.set_terminated(run.run_id, "KILLED")
        print(f"\ninterrupted: MLflow run {run.run_id} ({spec.name}/{stage}) is marked KILLED; "
              "what it wrote so far is kept", file=sys.stderr)
        raise
    except BaseException as err:
        with contextlib.suppress(Exception):
            run.set_tags({"error": f"{type(err).__name__}: {err}"[:5000]})
        client.set_terminated(run.run_id, "FAILED")
        raise
    finally:
        if previous_env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = previous_env
    client.set_terminated(run.run_id, "FINISHED")


def serve_ui(host: str = "127.0.0.1", port: int = 5000) -> None:
    """Run the MLflow UI on the project's store until interrupted."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or paths.default_tracking_uri()
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
               "--default-artifact-root", paths.default_artifact_root().as_uri(),
               "--host", host, "--port", str(port)]
    print(f"MLflow UI on http://{host}:{port} (store: {uri}); Ctrl-C stops it\n"
          f"Training runs: http://{host}:{port}/#/experiments?workflowType=machine_learning", flush=True)
    # Become the server: signals reach it (and it stops its workers) as they would `mlflow ui`.
    os.execv(sys.executable, command)
