"""An end-of-epoch checkpoint carries the metrics Lightning logs just after saving it, and a run
resumed from it logs them (a kill between the save and the logging would otherwise lose them)."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers.logger import Logger
from torch.utils.data import DataLoader, TensorDataset

from pipeline.callbacks import EpochMetricsInCheckpoint


class Recorder(Logger):
    def __init__(self) -> None:
        super().__init__()
        self.points: list[tuple[int, dict[str, float]]] = []

    name = "recorder"
    version = "0"

    def log_hyperparams(self, params, *args, **kwargs) -> None: ...

    def log_metrics(self, metrics, step=None) -> None:
        self.points.append((step, dict(metrics)))


class Regression(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(3, 1)

    def training_step(self, batch, index):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.layer(x), y)
        self.log("train/loss", loss, on_step=True, on_epoch=True)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)

    def train_dataloader(self):
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(40, 3, generator=generator)
        return DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=8)


def fit(folder: Path, epochs: int, logger: Recorder, ckpt_path: Path | None = None) -> None:
    trainer = pl.Trainer(max_epochs=epochs, logger=logger, log_every_n_steps=2, accelerator="cpu",
                         enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[EpochMetricsInCheckpoint(),
                                    ModelCheckpoint(dirpath=folder, filename="epoch{epoch}",
                                                    auto_insert_metric_name=False, save_top_k=-1)])
    trainer.fit(Regression(), ckpt_path=ckpt_path)


def test_the_checkpoint_carries_what_is_logged_after_it(tmp_path: Path):
    logger = Recorder()
    fit(tmp_path, 2, logger)
    first_epoch = [(step, m) for step, m in logger.points if "train/loss_epoch" in m][0]
    carried = torch.load(tmp_path / "epoch0.ckpt", weights_only=False)[EpochMetricsInCheckpoint.KEY]
    assert (carried["step"], carried["metrics"]) == (first_epoch[0], {k: float(v) for k, v in first_epoch[1].items()})

    resumed = Recorder()
    fit(tmp_path / "again", 2, resumed, ckpt_path=tmp_path / "epoch0.ckpt")
    assert resumed.points[0] == (carried["step"], carried["metrics"])
    # ...and then the second epoch, at the steps the uninterrupted run used.
    assert [step for step, _ in resumed.points[1:]] == [
        step for step, _ in logger.points if step > carried["step"]]


def test_a_checkpoint_within_an_epoch_carries_nothing(tmp_path: Path):
    trainer = pl.Trainer(max_epochs=1, logger=Recorder(), accelerator="cpu", enable_progress_bar=False,
                         enable_model_summary=False,
                         callbacks=[EpochMetricsInCheckpoint(),
                                    ModelCheckpoint(dirpath=tmp_path, filename="step{step}",
                                                    auto_insert_metric_name=False,
                                                    every_n_train_steps=2, save_top_k=-1)])
    trainer.fit(Regression())
    within = torch.load(tmp_path / "step2.ckpt", weights_only=False)
    assert within["global_step"] == 2
    assert EpochMetricsInCheckpoint.KEY not in within


def test_a_checkpoint_after_training_carries_nothing(tmp_path: Path):
    """Once training has ended its metrics are logged: a checkpoint saved then (the stage's
    `interrupted.ckpt` after a Ctrl-C) has nothing to carry."""
    trainer = pl.Trainer(max_epochs=1, logger=Recorder(), accelerator="cpu", enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[EpochMetricsInCheckpoint()],
                         enable_checkpointing=False)
    trainer.fit(Regression())
    trainer.save_checkpoint(tmp_path / "after.ckpt")
    assert EpochMetricsInCheckpoint.KEY not in torch.load(tmp_path / "after.ckpt", weights_only=False)
