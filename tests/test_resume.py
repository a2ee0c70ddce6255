"""A pretraining killed with SIGKILL is continued by `pipeline pretrain --resume`: same MLflow
run, every epoch metric once, and the same final weights as a run that was never killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from pipeline.data.fetch import fetch_dataset
from pipeline.data.registry import FASHION_MNIST
from tests.conftest import needs_fashion_mnist, tiny_spec

pytestmark = [pytest.mark.slow, needs_fashion_mnist]
EPOCHS = 12


def pipeline(root: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pipeline", *args], cwd=root,
                            env={**os.environ, "PIPELINE_ROOT": str(root)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen) -> str:
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr[-3000:]
    return stderr


def new_project(root: Path) -> Path:
    (root / "specs").mkdir(parents=True)
    (root / "dvc.yaml").write_text("stages: {}\n")
    fetch_dataset(FASHION_MNIST, root=root / "data")
    (root / "specs" / "resume.yaml").write_text(
        tiny_spec("resume", images=512, max_epochs=EPOCHS, checkpoint_min_interval_s=0))
    return root


TIMINGS = {"wall_time_s", "examples_per_s"}


def histories(root: Path) -> tuple[str, dict[str, list[tuple[int, float]]]]:
    """The finished run's id and every training metric's (step, value) points."""
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    [run] = client.search_runs([client.get_experiment_by_name("resume").experiment_id])
    assert run.info.status == "FINISHED"
    return run.info.run_id, {
        key: sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))
        for key in run.data.metrics if key not in TIMINGS
    }


def _epoch(checkpoint: Path) -> int:
    """The epoch a checkpoint ends (it is replaced atomically: never read half-written)."""
    return torch.load(checkpoint, map_location="cpu", weights_only=False)["epoch"]


def kill_at_epoch(process: subprocess.Popen, checkpoint: Path, epoch: int = 3) -> None:
    """SIGKILL a training once its last checkpoint has reached `epoch`."""
    deadline = time.monotonic() + 300
    while not checkpoint.is_file() or _epoch(checkpoint) < epoch:
        assert process.poll() is None, "finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.communicate()


def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path: Path):
    reference = new_project(tmp_path / "reference")
    finish(pipeline(reference, "pretrain", "specs/resume.yaml"))

    killed = new_project(tmp_path / "killed")
    process = pipeline(killed, "pretrain", "specs/resume.yaml")
    kill_at_epoch(process, killed / "artifacts" / "resume" / "pretrain" / "checkpoints" / "last.ckpt")

    evaluate = pipeline(killed, "evaluate", "specs/resume.yaml")
    _, stderr = evaluate.communicate(timeout=300)
    assert evaluate.returncode == 1
    assert "--resume" in stderr

    # What rerunning the DVC stage does (its command has --auto-resume).
    log = finish(pipeline(killed, "pretrain", "specs/resume.yaml", "--auto-resume"))
    assert "resuming from" in log

    run_id, resumed = histories(killed)
    _, uninterrupted = histories(reference)
    assert resumed.keys() == uninterrupted.keys()
    for key, points in uninterrupted.items():  # every step once, bit for bit
        assert [step for step, _ in resumed[key]] == [step for step, _ in points], key
        assert resumed[key] == points, key
    assert len(resumed["train/loss_epoch"]) == EPOCHS
    assert run_id in (killed / "artifacts" / "resume" / "pretrain" / "run.json").read_text()
    mine = torch.load(killed / "artifacts" / "resume" / "pretrain" / "encoder.pt", weights_only=True)
    theirs = torch.load(reference / "artifacts" / "resume" / "pretrain" / "encoder.pt", weights_only=True)
    for key, value in theirs.items():
        assert torch.equal(mine[key], value), key
    # The wall time is the whole training's: the part before the kill counts too.
    timing = json.loads((killed / "metrics" / "resume" / "pretrain.json").read_text())
    assert timing["wall_time_s"] > timing["wall_time_this_process_s"] > 0


def test_resume_without_an_unfinished_run_says_so(fmnist: Path):
    (fmnist / "specs" / "fresh.yaml").write_text(tiny_spec("fresh"))
    process = pipeline(fmnist, "pretrain", "specs/fresh.yaml", "--resume")
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 1
    assert "nothing to resume" in stderr
    # --auto-resume starts afresh instead; once finished, it starts afresh again.
    first = finish(pipeline(fmnist, "pretrain", "specs/fresh.yaml", "--auto-resume"))
    again = finish(pipeline(fmnist, "pretrain", "specs/fresh.yaml", "--auto-resume"))
    assert "resuming" not in first + again
