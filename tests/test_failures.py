"""Runs that fail end in a clear state: FAILED with the error, KILLED on Ctrl-C with a
checkpoint kept, a NaN loss stopped at once; never RUNNING, and earlier results intact."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from pipeline import stages
from pipeline.errors import PipelineError
from pipeline.models.swav.module import SwAV
from pipeline.spec.load import load_text
from tests.conftest import needs_fashion_mnist, tiny_spec

pytestmark = [pytest.mark.slow, needs_fashion_mnist]

def runs(project: Path, name: str):
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(name)
    return client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])


def test_an_exception_ends_the_run_failed_and_keeps_earlier_results(fmnist: Path, monkeypatch):
    spec = load_text(tiny_spec("boom"))
    stages.pretrain(spec)
    encoder = fmnist / "artifacts" / "boom" / "pretrain" / "encoder.pt"
    before = encoder.read_bytes()

    def explode(self, images):
        raise RuntimeError("the model exploded")

    monkeypatch.setattr(SwAV, "ssl_step", explode)
    with pytest.raises(RuntimeError, match="exploded"):
        stages.pretrain(spec)
    first, second = runs(fmnist, "boom")
    assert first.info.status == "FINISHED"
    assert second.info.status == "FAILED"
    assert "the model exploded" in second.data.tags["error"]
    assert encoder.read_bytes() == before


def _saved_steps(monkeypatch) -> list[int]:
    """The global step of every checkpoint the training writes, in order."""
    from pipeline.callbacks import AtomicCheckpointIO

    steps: list[int] = []
    real = AtomicCheckpointIO.save_checkpoint

    def recording(self, checkpoint, path, storage_options=None):
        steps.append(checkpoint["global_step"])
        return real(self, checkpoint, path, storage_options)

    monkeypatch.setattr(AtomicCheckpointIO, "save_checkpoint", recording)
    return steps


def test_checkpoints_every_n_steps_and_at_the_end(fmnist: Path, monkeypatch):
    saved = _saved_steps(monkeypatch)
    spec = load_text(tiny_spec("steps", max_epochs=2, checkpoint_every_n_steps=3, checkpoint_min_interval_s=0))
    stages.pretrain(spec)  # 256 images, batch 64: 4 steps an epoch, 8 in all
    folder = fmnist / "artifacts" / "steps" / "pretrain" / "checkpoints"
    assert [p.name for p in folder.iterdir()] == ["last.ckpt"]  # one file, rewritten
    assert saved == [3, 6, 8]  # every 3 steps, and the end of the fit
    last = torch.load(folder / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["global_step"] == 8


def test_checkpoints_at_each_epoch_end_unless_the_last_is_younger_than_the_interval(fmnist: Path, monkeypatch):
    saved = _saved_steps(monkeypatch)
    stages.pretrain(load_text(tiny_spec("every", max_epochs=3, checkpoint_min_interval_s=0)))
    assert saved == [4, 8, 12]
    saved.clear()
    # An interval longer than the training: only its end is written.
    stages.pretrain(load_text(tiny_spec("sparse", max_epochs=3, checkpoint_min_interval_s=3600)))
    assert saved == [12]
    last = torch.load(fmnist / "artifacts" / "sparse" / "pretrain" / "checkpoints" / "last.ckpt",
                      map_location="cpu", weights_only=False)
    assert last["global_step"] == 12
    assert last["epoch"] == 3  # after the fit: its 3 epochs done


def test_a_stop_asked_for_mid_epoch_leaves_last_ckpt_at_the_last_whole_epoch(tmp_path: Path, monkeypatch):
    """Ctrl-C sets should_stop: Lightning then ends the epoch early and the fit, neither of which
    is an epoch's end a resume could repeat; last.ckpt stays at the last whole epoch."""
    import pytorch_lightning as pl

    from pipeline.callbacks import AtomicCheckpointIO, LastCheckpoint
    from tests.test_epoch_metrics_in_checkpoint import Regression

    saved = _saved_steps(monkeypatch)

    class StopAtStep7(pl.Callback):
        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step == 7:
                trainer.should_stop = True

    trainer = pl.Trainer(max_epochs=5, logger=False, enable_progress_bar=False, enable_model_summary=False,
                         accelerator="cpu", plugins=[AtomicCheckpointIO()],
                         callbacks=[LastCheckpoint(tmp_path, min_interval_s=0), StopAtStep7()])
    trainer.fit(Regression())  # 40 examples in batches of 8: 5 steps an epoch
    assert trainer.global_step == 7
    assert saved == [5]
    assert torch.load(tmp_path / "last.ckpt", weights_only=False)["global_step"] == 5


def test_the_checkpoint_interval_changes_neither_hash():
    from pipeline.spec.experiment import spec_hash, training_hash

    often, rarely = (load_text(tiny_spec("h", checkpoint_min_interval_s=s)) for s in (0, 600))
    assert spec_hash(often) == spec_hash(rarely)
    assert training_hash(often) == training_hash(rarely)
    assert training_hash(often) != training_hash(load_text(tiny_spec("h", max_epochs=2)))


def test_an_unreadable_encoder_is_a_clear_error(fmnist: Path):
    spec = load_text(tiny_spec("torn"))
    stages.pretrain(spec)
    encoder = fmnist / "artifacts" / "torn" / "pretrain" / "encoder.pt"
    encoder.write_bytes(encoder.read_bytes()[:200])
    with pytest.raises(PipelineError, match=r"encoder.pt is unreadable .*pipeline pretrain specs/torn.yaml"):
        stages.evaluate(spec)


def test_a_nan_loss_stops_training_naming_the_step(fmnist: Path, monkeypatch):
    spec = load_text(tiny_spec("nan", max_epochs=3, checkpoint_min_interval_s=0))
    real_step = SwAV.ssl_step

    def poisoned(self, images):
        loss, features = real_step(self, images)
        return (loss * float("nan") if self.global_step >= 5 else loss), features

    monkeypatch.setattr(SwAV, "ssl_step", poisoned)
    with pytest.raises(PipelineError, match=r"loss is nan at step 5 .*last good checkpoint: .*last\.ckpt"):
        stages.pretrain(spec)
    [run] = runs(fmnist, "nan")
    assert run.info.status == "FAILED"
    assert "loss is nan" in run.data.tags["error"]


def test_ctrl_c_ends_the_run_killed_with_a_checkpoint(fmnist: Path):
    spec_path = fmnist / "specs" / "long.yaml"
    spec_path.write_text(tiny_spec("long", max_epochs=500, checkpoint_min_interval_s=0))
    process = subprocess.Popen([sys.executable, "-m", "pipeline", "pretrain", str(spec_path)],
                               env={**os.environ, "PIPELINE_ROOT": str(fmnist)},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    checkpoints = fmnist / "artifacts" / "long" / "pretrain" / "checkpoints"
    deadline = time.monotonic() + 180
    while not (checkpoints / "last.ckpt").is_file():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no epoch finished within 180 s"
        time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    [run] = runs(fmnist, "long")
    assert run.info.status == "KILLED"
    state = torch.load(checkpoints / "interrupted.ckpt", map_location="cpu", weights_only=False)
    assert state["global_step"] > 0


def _mount_tmpfs(folder: Path, size: str) -> bool:
    folder.mkdir(parents=True)
    if os.geteuid() != 0:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True).returncode == 0


def test_a_full_disk_while_saving_is_a_clear_error_and_loses_nothing(fmnist: Path):
    """The artifacts folder on a small real filesystem (tmpfs), filled up while a pretraining
    writes checkpoints: a clear message, exit 1, the run FAILED, the last checkpoint intact; once
    space is freed, --resume finishes the run."""
    artifacts = fmnist / "artifacts"
    if not _mount_tmpfs(artifacts, "32m"):
        pytest.skip("needs root to mount a small tmpfs")
    try:
        spec_path = fmnist / "specs" / "full.yaml"
        spec_path.write_text(tiny_spec("full", max_epochs=60, checkpoint_every_n_steps=2, checkpoint_min_interval_s=0))
        command = [sys.executable, "-m", "pipeline", "pretrain", str(spec_path)]
        env = {**os.environ, "PIPELINE_ROOT": str(fmnist)}
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        checkpoints = artifacts / "full" / "pretrain" / "checkpoints"
        deadline = time.monotonic() + 180
        while not (checkpoints / "last.ckpt").is_file():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "no checkpoint within 180 s"
            time.sleep(0.1)
        filler = artifacts / "filler"
        with filler.open("wb") as sink:  # the disk fills up while training goes on
            with pytest.raises(OSError):
                while True:
                    sink.write(b"\0" * (1 << 16))
                    sink.flush()
        _, stderr = process.communicate(timeout=120)

        assert process.returncode == 1, stderr[-3000:]
        assert "no space left" in stderr.lower(), stderr[-3000:]
        assert "--resume" in stderr, stderr[-3000:]
        assert "Traceback" not in stderr, stderr[-3000:]
        [run] = runs(fmnist, "full")
        assert run.info.status == "FAILED"
        assert "space" in run.data.tags["error"].lower()
        kept = torch.load(checkpoints / "last.ckpt", map_location="cpu", weights_only=False)
        assert 0 < kept["global_step"] < 60 * 4
        assert not list(checkpoints.glob("*.tmp*"))
        assert not (artifacts / "full" / "pretrain" / "encoder.pt").exists()

        filler.unlink()
        resumed = subprocess.run([*command, "--resume"], env=env, capture_output=True, text=True, timeout=300)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        [run] = runs(fmnist, "full")
        assert run.info.status == "FINISHED"
        assert (artifacts / "full" / "pretrain" / "encoder.pt").is_file()
    finally:
        subprocess.run(["umount", "-l", str(artifacts)])
