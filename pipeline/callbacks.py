"""Lightning callbacks the stages add to every training."""

from __future__ import annotations

import math
import signal
import sys
import threading
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Checkpoint
from pytorch_lightning.plugins import TorchCheckpointIO

from pipeline.errors import PipelineError
from pipeline.fsutil import save_torch_atomic
from pipeline.lightning_internals import batches_that_stepped, epoch_metrics_to_log


def flush_loggers(trainer: pl.Trainer, quiet: bool = False) -> None:
    """Writes what the trainer's loggers have gathered and not written yet (the stage's MLflow
    logger writes in batches). `quiet`: while another error is being handled, a failed write is
    reported on stderr instead of raised, so the error that ended training is the one that shows."""
    for logger in trainer.loggers:
        if callable(flush := getattr(logger, "flush", None)):
            try:
                flush()
            except Exception as err:
                if not quiet:
                    raise
                print(f"could not write the last metrics to MLflow ({err})", file=sys.stderr)


class EpochMetricsSynced(pl.Callback):
    """Reduces the epoch's metrics logged with `sync_dist` across processes at the start of the epoch's
    end, on every rank alike. Otherwise the first reader reduces them: the progress bar, which reads
    them on rank 0 only, so rank 0 waits in that reduction while the other ranks wait in the next
    collective (a checkpoint's), and DDP hangs. First in the callback list."""

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.world_size > 1:
            trainer.callback_metrics  # noqa: B018 - the property computes (and caches) every epoch metric


class FiniteLoss(pl.Callback):
    """Stops training at the first NaN or infinite loss, before its gradients touch the weights,
    naming the step and the last good checkpoint, instead of training on garbage to the end."""

    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           loss: torch.Tensor) -> None:
        if math.isfinite(loss.item()):
            return
        checkpoint = trainer.checkpoint_callback.last_model_path if trainer.checkpoint_callback else ""
        raise PipelineError(
            f"training stopped: the loss is {float(loss)} at step {trainer.global_step} "
            f"(epoch {trainer.current_epoch}); last good checkpoint: "
            f"{checkpoint or 'none yet'}. Try a lower train.optimizer.lr or train.precision=32-true."
        )


class CheckpointOnException(pl.Callback):
    """Saves `<dirpath>/interrupted.ckpt` when training stops on an error, so what was learnt
    is kept. (Lightning's OnExceptionCheckpoint also makes every later `fit` resume
    from the last checkpoint implicitly; runs here start fresh unless asked.)"""

    def __init__(self, dirpath: Path):
        self.path = Path(dirpath) / "interrupted.ckpt"

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                     exception: BaseException) -> None:
        if trainer.global_step == 0:
            return
        try:
            trainer.save_checkpoint(self.path)
            flush_loggers(trainer, quiet=True)
        except OSError as err:  # e.g. the disk is full: the error being handled matters more
            print(f"could not save {self.path} ({err.strerror}); the checkpoints before it are kept",
                  file=sys.stderr)


class LastCheckpoint(Checkpoint):
    """`<dirpath>/last.ckpt` and no other file, rewritten (atomically, by AtomicCheckpointIO) at each
    epoch end, or every `every_n_train_steps` steps, unless the one there is younger than
    `min_interval_s`; the end of a fit that ran its course is always written. A kill loses at most
    that interval and one epoch (or N steps) of training, while a run of one-second epochs does
    not spend its time writing checkpoints. Built on Lightning's public API (`Checkpoint`,
    `trainer.save_checkpoint`, the strategy's `broadcast`): ModelCheckpoint's top-k bookkeeping is
    not needed for one file, and its `save_last` would write each checkpoint twice."""

    def __init__(self, dirpath: Path, every_n_train_steps: int | None = None, min_interval_s: float = 0.0):
        self.path = Path(dirpath) / "last.ckpt"
        self.every_n_train_steps = every_n_train_steps
        self.min_interval_s = min_interval_s
        self.last_model_path = ""
        self._saved_step = -1
        self._saved_at = time.monotonic()

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._saved_at = time.monotonic()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch,
                           batch_idx: int) -> None:
        if self.every_n_train_steps and trainer.global_step % self.every_n_train_steps == 0:
            self._save(trainer, respect_interval=True)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.every_n_train_steps:
            self._save(trainer, respect_interval=True)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # The fit's final state, whenever the interval skipped its last epoch end.
        self._save(trainer, respect_interval=False)

    def _save(self, trainer: pl.Trainer, respect_interval: bool) -> None:
        # After a stop asked for (Ctrl-C), the epoch Lightning ends early is no epoch's end: last.ckpt
        # stays a whole epoch's (or N steps') end, which a resume repeats exactly; the stage keeps
        # the state at the stop in interrupted.ckpt.
        if (trainer.should_stop or trainer.sanity_checking or trainer.fast_dev_run
                or trainer.global_step == self._saved_step):
            return
        # Rank 0's clock decides for every rank: a save ends at a barrier all of them must reach.
        if respect_interval and trainer.strategy.broadcast(time.monotonic() - self._saved_at < self.min_interval_s):
            return
        flush_loggers(trainer)  # what the checkpoint stands for is in the store first
        self.last_model_path = str(self.path)  # before saving: it is part of the callback's saved state
        self._saved_step = trainer.global_step
        trainer.save_checkpoint(self.path)
        self._saved_at = time.monotonic()

    def state_dict(self) -> dict:
        return {"last_model_path": self.last_model_path, "saved_step": self._saved_step}

    def load_state_dict(self, state_dict: dict) -> None:
        self.last_model_path = state_dict.get("last_model_path", "")
        self._saved_step = state_dict.get("saved_step", -1)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's own local writes go through a temporary file in the system's temp folder and
    then `shutil.move`, which is a copy over the old file whenever that folder is on another
    filesystem (a tmpfs /tmp): a kill or a full disk during the copy then destroys the last good
    checkpoint. This writes beside the target and renames, so the old file stays whole."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        if storage_options is not None or "://" in str(path):  # remote stores: Lightning's way
            return super().save_checkpoint(checkpoint, path, storage_options=storage_options)
        save_torch_atomic(checkpoint, Path(path))


class GracefulInterrupt(pl.Callback):
    """The first Ctrl-C asks training to stop after the current batch (Lightning's own handling
    raises KeyboardInterrupt wherever the process is, which can be in the middle of a write to
    the MLflow store and leave it locked); `requested` then tells the stage to save a checkpoint
    and end the run as KILLED. A second Ctrl-C interrupts at once.

    Under SLURM, SIGUSR1 (`#SBATCH --signal=USR1@120`: the job's time is nearly up, or it is
    preempted) stops the same way and sets `requeue`: the stage then requeues the job, whose
    `--auto-resume` continues this checkpoint in the same MLflow run. (Lightning's own SLURM
    requeue is off: it would restore its hpc_ckpt into a new run.)"""

    def __init__(self, slurm: bool | None = None) -> None:
        import os

        self.requested = False
        self.requeue = False
        self._fitting: pl.Trainer | None = None
        self._signals = [signal.SIGINT]
        if os.environ.get("SLURM_JOB_ID") if slurm is None else slurm:
            self._signals.append(signal.SIGUSR1)
        self._previous: dict = {}

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if threading.current_thread() is threading.main_thread():
            self._fitting = trainer
            self._previous = {signum: signal.signal(signum, self._handle) for signum in self._signals}

    def _handle(self, signum, frame) -> None:
        self.requested = True
        if signum == signal.SIGINT:
            signal.signal(signal.SIGINT, self._previous.get(signal.SIGINT) or signal.default_int_handler)
            message = "Ctrl-C: stopping after this batch (again to stop at once)"
        else:
            self.requeue = True
            message = "SIGUSR1 from SLURM: stopping after this batch, then saving a checkpoint and requeueing the job"
        if self._fitting is not None:
            self._fitting.should_stop = True
            print(f"\n{message}", file=sys.stderr)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if threading.current_thread() is threading.main_thread():
            for signum, previous in self._previous.items():
                signal.signal(signum, previous)
            self._previous = {}


def requeue_slurm_job() -> str:
    """`scontrol requeue` this SLURM job (the task of an array job); what happened, in words."""
    import os
    import subprocess

    env = os.environ
    job = (f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}" if "SLURM_ARRAY_TASK_ID" in env
           else env.get("SLURM_JOB_ID", ""))
    try:
        done = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"could not requeue SLURM job {job} ({err}): resubmit it; --auto-resume continues the checkpoint"
    if done.returncode != 0:
        return (f"could not requeue SLURM job {job} ({done.stderr.strip() or done.returncode}): resubmit it "
                "(the job needs #SBATCH --requeue); --auto-resume continues the checkpoint")
    return f"requeued SLURM job {job}: its --auto-resume continues from the checkpoint"


class RngState(pl.Callback):
    """Keeps the global random state (augmentations draw from it) in every checkpoint, so a
    resumed run continues the same random stream as an uninterrupted one."""

    def state_dict(self) -> dict:
        state = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        torch.set_rng_state(state_dict["torch"])
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])


class TrainingClock(pl.Callback):
    """Training time across interruptions: a checkpoint carries the seconds trained before it, so
    a resumed run reports the whole training's wall time, not only its own share."""

    def __init__(self) -> None:
        self.before = 0.0
        self.started = time.perf_counter()

    def elapsed(self) -> float:
        return self.before + time.perf_counter() - self.started

    def state_dict(self) -> dict:
        return {"elapsed_s": self.elapsed()}

    def load_state_dict(self, state_dict: dict) -> None:
        self.before = float(state_dict.get("elapsed_s", 0.0))
        self.started = time.perf_counter()


class EpochMetricsInCheckpoint(pl.Callback):
    """Makes an end-of-epoch checkpoint carry the epoch's metrics, and a run resumed from it log
    whichever of them the run lacks.

    Lightning saves the checkpoint in `on_train_epoch_end` and sends the epoch's metrics to the
    logger only after that: a process killed in between leaves a checkpoint past an epoch whose
    metrics were never logged, and nothing would log them again. The resumed run's logger drops
    points it already holds (`Run.lightning_logger(resumed=True)`), so either way each epoch's
    metrics are in the run once."""

    KEY = "epoch_metrics_after_save"

    def __init__(self) -> None:
        self._epoch_ended = False
        self._restored: dict | None = None

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_ended = False

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_ended = True

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_ended = False  # the last epoch's metrics are logged by now

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict) -> None:
        if not self._epoch_ended or not trainer.loggers:
            return
        # Exactly what the loop logs next: the epoch-reduced metrics, at the epoch's last step.
        metrics = epoch_metrics_to_log(trainer)
        if metrics is None:
            return
        metrics.setdefault("epoch", trainer.current_epoch)
        checkpoint[self.KEY] = {"step": batches_that_stepped(trainer) - 1, "metrics": metrics}

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict) -> None:
        self._restored = checkpoint.get(self.KEY)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._restored:
            for logger in trainer.loggers:
                logger.log_metrics(self._restored["metrics"], step=self._restored["step"])
            self._restored = None
