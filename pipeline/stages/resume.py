"""When a training continues instead of starting afresh, and what a checkpoint is for.

A training writes `run.json` (its MLflow run, its training hash, finished or not) and checkpoints
under artifacts/<name>/pretrain/. `--resume` continues an unfinished run of the same
configuration from its last checkpoint, in the same MLflow run; `--auto-resume` (the DVC stage's
way) does so when there is one and starts afresh otherwise."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.fsutil import is_disk_full
from pipeline.spec.experiment import ExperimentSpec, training_hash
from pipeline.stages.common import read_json
from pipeline.upstream import made_by


def checkpointing(spec: ExperimentSpec, folder: Path):
    """checkpoints/last.ckpt at each epoch end or every N steps, at most every
    `train.checkpoint_min_interval_s` seconds, and at the end of the fit."""
    from pipeline.callbacks import LastCheckpoint

    return LastCheckpoint(folder, every_n_train_steps=spec.train.checkpoint_every_n_steps,
                          min_interval_s=spec.train.checkpoint_min_interval_s)


def resume_point(spec: ExperimentSpec, out: Path) -> tuple[str, dict]:
    """(MLflow run id, run.json record) of the unfinished training to continue; a clear error
    when there is none or it was made by another configuration."""
    fresh = f"run `pipeline pretrain specs/{spec.name}.yaml` without --resume"
    record = read_json(out / "run.json", f"nothing to resume: {fresh}")
    if "training_hash" not in record:
        raise PipelineError(f"{out} was made by an earlier version of the pipeline: {fresh}")
    if record.get("training_hash") != training_hash(spec):
        raise PipelineError(f"{out} was made by another configuration (training hash "
                            f"{record.get('training_hash')}, the spec now {training_hash(spec)}): {fresh}")
    if record.get("finished"):
        raise PipelineError(f"the pretraining in {out} finished: nothing to resume")
    return record["run_id"], record


def phase_checkpoint(folder: Path) -> Path | None:
    """The checkpoint a phase continues from: last.ckpt ends an epoch (or a
    checkpoint_every_n_steps interval), so resuming from it repeats the uninterrupted run exactly;
    interrupted.ckpt (Ctrl-C mid-epoch) is the fallback. None: the phase has not started."""
    for name in ("last.ckpt", "interrupted.ckpt"):
        if (folder / name).is_file():
            return folder / name
    return None


def unfinished(spec: ExperimentSpec, out: Path, code: str | None = None, upstream: dict | None = None) -> bool:
    """Whether out/ holds an unfinished training of this very configuration (and, where given,
    made by this code from these upstream runs) with something to continue from: a checkpoint
    or a finished phase. Otherwise `--auto-resume` starts afresh."""
    try:
        record = json.loads((out / "run.json").read_text())
    except (OSError, json.JSONDecodeError):
        return False
    same = (record.get("training_hash") == training_hash(spec) and not record.get("finished")
            and (code is None or record.get("code") == code)
            and (upstream is None or record.get("upstream", {}) == upstream))
    started = record.get("phases_done") or any((out / "checkpoints").rglob("*.ckpt"))
    return bool(same and started)


@contextlib.contextmanager
def resumable_when_disk_full(spec: ExperimentSpec, spec_path: Path | None, checkpoints: Path):
    """A full disk mid-training: say which checkpoint survived and how to continue from it."""
    try:
        yield
    except OSError as err:
        if not is_disk_full(err):
            raise
        command = f"pipeline pretrain {spec_path or f'specs/{spec.name}.yaml'}"
        # The newest last.ckpt (a training of several phases keeps one per phase).
        kept = max(checkpoints.rglob("last.ckpt"), key=lambda p: p.stat().st_mtime, default=None)
        if kept is not None:
            then = f"the last good checkpoint, {kept}, is kept; free space, then continue " \
                   f"with `{command} --resume`"
        else:
            then = f"no checkpoint was written yet; free space, then rerun `{command}`"
        raise PipelineError(f"no space left on device writing {err.filename}: {then}") from err


def current(spec: ExperimentSpec, out: Path, code: str, upstream: dict[str, str]) -> dict | None:
    """The metrics of the finished training in out/ when it is of this very configuration, made
    by this code from these upstream runs: then there is nothing to train again. None otherwise."""
    try:
        record = json.loads((out / "run.json").read_text())
        metrics = json.loads((out / "metrics.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    same = (record.get("finished") and made_by(out, record) == training_hash(spec)
            and record.get("code") == code and record.get("upstream", {}) == upstream
            and metrics.get("run_id") == record.get("run_id"))
    kept = all((out / name).exists() for name in ("model.pt", "encoder.pt", "spec.yaml", "plots"))
    return metrics if same and kept else None
