"""What every self-supervised family shares: the encoder, the optimiser and schedule from the
spec, and an online linear probe on detached features that shows learning epoch by epoch."""

from __future__ import annotations

import math

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.data.datamodule import as_float
from pipeline.spec.experiment import TrainSpec


class SelfSupervised(pl.LightningModule):
    """A family builds its `encoder` (the module whose features every downstream task reads; it
    has an `out_dim`) and implements `ssl_step(inputs) -> (loss, features)`: inputs are float
    (images in [0, 1]) [B, *input_shape]; features are encoder outputs for the online probe.
    Every family is built as Class(model_spec, train_spec, input_shape, num_classes)."""

    def __init__(self, encoder: nn.Module, train: TrainSpec, num_classes: int):
        super().__init__()
        self.train_spec = train
        self.encoder = encoder
        self.online_probe = nn.Linear(self.encoder.out_dim, num_classes)

    def ssl_step(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def diagnostics(self) -> dict[str, str]:
        """Findings about the run worth a tag (e.g. collapse); empty by default."""
        return {}

    def plot_groups(self) -> dict[str, tuple[str, list[str]]]:
        """The PNGs the pretrain stage draws from the run's metric history when training ends:
        file stem -> (title, MLflow metric names)."""
        return {"training_curves": ("pretraining", ["train/loss_epoch", "val/online_probe_acc"])}

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        inputs, labels = batch
        loss, features = self.ssl_step(as_float(inputs))
        probe_loss = F.cross_entropy(self.online_probe(features.detach()), labels)
        batch_size = len(labels)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=batch_size,
                 sync_dist=True)
        self.log("train/online_probe_loss", probe_loss, on_epoch=True, on_step=False, batch_size=batch_size,
                 sync_dist=True)
        return loss + probe_loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        inputs, labels = batch
        logits = self.online_probe(self.encoder(as_float(inputs)))
        accuracy = (logits.argmax(dim=1) == labels).float().mean()
        self.log("val/online_probe_acc", accuracy, on_epoch=True, prog_bar=True, batch_size=len(labels),
                 sync_dist=True)

    def configure_optimizers(self):
        spec = self.train_spec.optimizer
        probe = list(self.online_probe.parameters())
        probe_ids = {id(p) for p in probe}
        groups = [
            {"params": [p for p in self.parameters() if id(p) not in probe_ids]},
            {"params": probe, "weight_decay": 0.0},
        ]
        if spec.name == "sgd":
            optimizer = torch.optim.SGD(groups, lr=spec.lr, momentum=spec.momentum,
                                        weight_decay=spec.weight_decay)
        elif spec.name == "adam":
            optimizer = torch.optim.Adam(groups, lr=spec.lr, weight_decay=spec.weight_decay)
        else:
            optimizer = torch.optim.AdamW(groups, lr=spec.lr, weight_decay=spec.weight_decay)
        schedule = self.train_spec.scheduler
        if schedule.name == "none" and schedule.warmup_epochs == 0:
            return optimizer
        total = max(1, int(self.trainer.estimated_stepping_batches))
        per_epoch = max(1, total // max(1, self.trainer.max_epochs))
        warmup = int(schedule.warmup_epochs * per_epoch)

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            if schedule.name == "none":
                return 1.0
            progress = min(1.0, (step - warmup) / max(1, total - warmup))
            cosine = 0.5 * (1 + math.cos(math.pi * progress))
            return schedule.min_lr_ratio + (1 - schedule.min_lr_ratio) * cosine

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
