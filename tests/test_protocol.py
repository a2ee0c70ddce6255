"""A training protocol of several fits in one MLflow run (one per experience, measured after
each), resumed after a kill between two of them: the same weights and the same metric histories
as an uninterrupted run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pipeline.data.fetch import fetch_dataset
from pipeline.data.registry import FASHION_MNIST
from tests.conftest import needs_fashion_mnist

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.slow, needs_fashion_mnist]


def train(project: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PIPELINE_ROOT": str(project), "MPLBACKEND": "Agg", **env}
    environment.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run([sys.executable, "-m", "tests.toy_protocol", *args], cwd=ROOT, env=environment,
                          capture_output=True, text=True, timeout=600)


def histories(project: Path) -> dict[str, list[tuple[int, float]]]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    [run] = client.search_runs([client.get_experiment_by_name("toy").experiment_id])
    assert run.info.status == "FINISHED"
    return {key: sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))
            for key in run.data.metrics if key not in ("wall_time_s", "examples_per_s")}


def test_two_experiences_resume_after_a_kill_between_them(tmp_path: Path):
    projects = {}
    for name in ("uninterrupted", "killed"):
        project = tmp_path / name
        (project / "specs").mkdir(parents=True)
        (project / "dvc.yaml").write_text("stages: {}\n")
        fetch_dataset(FASHION_MNIST, root=project / "data")
        projects[name] = project
    whole = train(projects["uninterrupted"])
    assert whole.returncode == 0, whole.stderr[-3000:]

    killed = train(projects["killed"], KILL_AT_PHASE="experience1")
    assert killed.returncode == -9, killed.stderr[-3000:]
    out = projects["killed"] / "artifacts" / "toy" / "pretrain"
    assert (out / "phases" / "experience0.pt").is_file()
    assert not (out / "model.pt").exists()
    resumed = train(projects["killed"], "--auto-resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "phase 1 of 2" not in resumed.stderr
    assert "phase 2 of 2 (experience1)" in resumed.stderr

    def weights(project: Path) -> dict[str, torch.Tensor]:
        return torch.load(project / "artifacts" / "toy" / "pretrain" / "model.pt", weights_only=True)

    expected, got = weights(projects["uninterrupted"]), weights(projects["killed"])
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    expected, got = histories(projects["uninterrupted"]), histories(projects["killed"])
    assert expected == got
    # One run: the second experience's steps continue the first's; every experience seen is
    # measured after each (the first one twice: after learning it, and after learning the next).
    steps = [step for step, _ in expected["train/loss_step"]]
    assert steps == sorted(steps)
    assert len(set(steps)) == len(steps)
    assert max(steps) > 20
    assert [s for s, _ in expected["experience_accuracy/0"]] == [0, 1]
    assert [s for s, _ in expected["experience_accuracy/1"]] == [1]
    assert expected["experience_accuracy/0"][0][1] > 0.6  # learnt; the second experience then overwrites it
