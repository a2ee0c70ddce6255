"""Lightning callbacks the stages add to every training."""

from __future__ import annotations

import math
from pathlib import Path

import pytorch_lightning as pl
import torch

from pipeline.errors import PipelineError


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
    """Saves `<dirpath>/interrupted.ckpt` when training stops on Ctrl-C or an error, so what
    was learnt is kept. (Lightning's OnExceptionCheckpoint also makes every later `fit` resume
    from the last checkpoint implicitly; runs here start fresh unless asked.)"""

    def __init__(self, dirpath: Path):
        self.path = Path(dirpath) / "interrupted.ckpt"

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                     exception: BaseException) -> None:
        if trainer.global_step > 0:
            trainer.save_checkpoint(self.path)
