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
