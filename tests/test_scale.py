"""The same spec past one process: DDP on CPU (gloo), one MLflow run, rank 0 writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import needs_fashion_mnist, tiny_spec

pytestmark = [pytest.mark.slow, needs_fashion_mnist]

def test_ddp_on_two_cpu_processes_makes_one_run(fmnist: Path):
    project = fmnist
    spec = project / "specs" / "ddp.yaml"
    spec.write_text(tiny_spec("ddp", images=512, max_epochs=2, strategy="ddp", devices=2, accelerator="cpu"))
    result = subprocess.run([sys.executable, "-m", "pipeline", "pretrain", str(spec)],
                            env={**os.environ, "PIPELINE_ROOT": str(project)},
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "GLOBAL_RANK: 1" in result.stderr  # two processes really trained
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    [run] = client.search_runs([client.get_experiment_by_name("ddp").experiment_id])
    assert run.info.status == "FINISHED"
    assert len(client.get_metric_history(run.info.run_id, "train/loss_epoch")) == 2
    # 512 images, batch 64 per process, 2 processes: 4 steps an epoch.
    result = json.loads((project / "metrics" / "ddp" / "pretrain.json").read_text())
    assert result["epochs"] == 2
    assert result["steps"] == 2 * 4
    assert run.data.metrics["examples_per_s"] > 0
    assert (project / "artifacts" / "ddp" / "pretrain" / "encoder.pt").is_file()


def test_pipeline_run_under_ddp_trains_on_two_processes_then_evaluates_and_reports_once(fmnist: Path):
    """Lightning starts the extra process by running the same command again: that process trains its
    share and ends; rank 0 alone evaluates and reports. (Before, the extra process went on to
    evaluate a training rank 0 had not finished, failed, and Lightning killed rank 0; and the
    progress bar reducing the epoch's metrics on rank 0 alone hung both at the first epoch end.)"""
    project = fmnist
    spec = project / "specs" / "ddp_run.yaml"
    spec.write_text(tiny_spec("ddp_run", images=512, max_epochs=2, strategy="ddp", devices=2, accelerator="cpu")
                    .replace("batch_size: 64}", "batch_size: 64, probe_subset: 512, eval_subset: 200}"))
    result = subprocess.run([sys.executable, "-m", "pipeline", "run", str(spec)],
                            env={**os.environ, "PIPELINE_ROOT": str(project)},
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "GLOBAL_RANK: 1" in result.stderr
    assert result.stderr.count("evaluate ddp_run:") == 1  # rank 0's evaluation, and no other
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("ddp_run").experiment_id])
    assert sorted(run.data.tags["stage"] for run in runs) == ["evaluate", "pretrain"]
    assert {run.info.status for run in runs} == {"FINISHED"}
    evaluated = json.loads((project / "metrics" / "ddp_run" / "evaluate.json").read_text())
    assert evaluated["pretrain_run_id"] in {run.info.run_id for run in runs}
    assert "ddp_run" in (project / "reports" / "summary.md").read_text()


def test_slurm_warning_signal_checkpoints_requeues_and_the_requeued_job_continues_the_run(fmnist: Path, tmp_path):
    """`#SBATCH --signal=USR1@120`: the training stops after its batch, saves its checkpoint and
    requeues the job (`scontrol requeue`, faked here); Lightning's own requeue, which would write
    hpc_ckpt_* and restore it into a new MLflow run, stays off. The requeued job's `--auto-resume`
    finishes the same MLflow run."""
    import signal
    import time

    project = fmnist
    spec = project / "specs" / "slurm.yaml"
    spec.write_text(tiny_spec("slurm", images=512, max_epochs=8, accelerator="cpu", checkpoint_min_interval_s=0))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "scontrol.txt"
    (bin_dir / "scontrol").write_text(f"#!/bin/sh\necho \"$@\" >> {calls}\n")
    (bin_dir / "scontrol").chmod(0o755)
    env = {**os.environ, "PIPELINE_ROOT": str(project), "PATH": f"{bin_dir}:{os.environ['PATH']}",
           "SLURM_JOB_ID": "4242", "SLURM_NTASKS": "1", "SLURM_JOB_NAME": "train", "SLURM_NODELIST": "localhost"}
    command = [sys.executable, "-m", "pipeline", "pretrain", str(spec), "--auto-resume"]
    job = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    last = project / "artifacts" / "slurm" / "pretrain" / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 300
    while not last.exists() and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    job.send_signal(signal.SIGUSR1)
    _, stderr = job.communicate(timeout=300)
    assert job.returncode != 0, stderr[-2000:]
    assert "requeued SLURM job 4242" in stderr
    assert calls.read_text().split() == ["requeue", "4242"]
    assert (last.parent / "interrupted.ckpt").is_file()
    assert not list(project.rglob("hpc_ckpt*"))
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    [run] = client.search_runs([client.get_experiment_by_name("slurm").experiment_id])
    assert run.info.status == "KILLED"
    epochs_before = len(client.get_metric_history(run.info.run_id, "train/loss_epoch"))
    assert epochs_before < 8

    requeued = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert requeued.returncode == 0, requeued.stderr[-3000:]
    [run] = client.search_runs([client.get_experiment_by_name("slurm").experiment_id])  # the same run
    assert run.info.status == "FINISHED"
    # Every epoch's end, 8 steps each (the interrupted epoch's partial figure, logged at the stop, stays).
    ends = {m.step for m in client.get_metric_history(run.info.run_id, "train/loss_epoch")}
    assert {8 * epoch + 7 for epoch in range(8)} <= ends
    assert json.loads((project / "metrics" / "slurm" / "pretrain.json").read_text())["epochs"] == 8
