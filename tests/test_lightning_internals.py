"""What the project reads of Lightning beyond its public API (pipeline/lightning_internals.py),
checked on a real fit: an upgrade of Lightning that moves any of it fails here, by name."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from pipeline.lightning_internals import attached_trainer, batches_that_stepped, epoch_metrics_to_log


class Tiny(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(2, 1)
        self.seen: dict = {}

    def training_step(self, batch, batch_idx):
        self.seen["attached"] = attached_trainer(self)
        loss = self.layer(batch[0]).pow(2).mean()
        self.log("train/loss", loss, on_step=False, on_epoch=True)
        return loss

    def on_train_epoch_end(self) -> None:
        self.seen["to_log"] = epoch_metrics_to_log(self.trainer)
        self.seen["stepped"] = batches_that_stepped(self.trainer)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_every_internal_read_answers_on_a_real_fit(tmp_path):
    model = Tiny()
    assert attached_trainer(model) is None  # outside a fit: None, where `model.trainer` raises
    trainer = pl.Trainer(max_epochs=1, logger=pl.loggers.CSVLogger(tmp_path), enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(model, DataLoader(TensorDataset(torch.randn(12, 2)), batch_size=4))
    assert model.seen["attached"] is trainer
    assert batches_that_stepped(trainer) == 3 == model.seen["stepped"]
    # At the epoch's end: the epoch's mean loss, as the loggers receive it.
    assert set(model.seen["to_log"]) == {"train/loss"}
    assert model.seen["to_log"]["train/loss"] == float(trainer.logged_metrics["train/loss"])
    assert epoch_metrics_to_log(pl.Trainer(logger=False)) is None  # no fit yet


def test_no_other_module_reads_lightning_internals():
    """Lightning's private attributes are read in pipeline/lightning_internals.py alone."""
    import re
    from pathlib import Path

    import pipeline

    private = re.compile(r"trainer\._[a-z]|\._trainer\b|_logger_connector|_batches_that_stepped|"
                         r"_should_skip_saving_checkpoint|_save_topk_checkpoint|_monitor_candidates")
    root = Path(pipeline.__file__).parent
    readers = sorted(str(path.relative_to(root)) for path in root.rglob("*.py")
                     if path.name != "lightning_internals.py" and private.search(path.read_text()))
    assert readers == []
