"""What every self-supervised family shares: the encoder, the optimiser and schedule from the
spec, and an online linear probe on detached features that shows learning epoch by epoch."""

from __future__ import annotations

import math

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.models.backbones import build_backbone
from pipeline.spec.components import BackboneSpec
from pipeline.spec.experiment import TrainSpec


class SelfSupervised(pl.LightningModule):
    """Subclasses implement `ssl_step(images) -> (loss, features)`: images are float [0, 1]
    [B, C, H, W]; features are encoder outputs of one un-mixed view, for the online probe."""

    def __init__(self, backbone: BackboneSpec, train: TrainSpec, image_shape: tuple[int, int, int],
                 num_classes: int):
        super().__init__()
        self.train_spec = train
        self.image_shape = tuple(image_shape)
        self.encoder = build_backbone(backbone, in_channels=image_shape[0])
        self.online_probe = nn.Linear(self.encoder.out_dim, num_classes)

    def ssl_step(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def diagnostics(self) -> dict[str, str]:
        """Findings about the run worth a tag (e.g. collapse); empty by default."""
        return {}

    @staticmethod
    def to_float(images: torch.Tensor) -> torch.Tensor:
        return images.float().div_(255) if images.dtype == torch.uint8 else images.float()

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, labels = batch
        loss, features = self.ssl_step(self.to_float(images))
        probe_loss = F.cross_entropy(self.online_probe(features.detach()), labels)
        batch_size = len(labels)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=batch_size,
                 sync_dist=True)
        self.log("train/online_probe_loss", probe_loss, on_epoch=True, on_step=False, batch_size=batch_size,
                 sync_dist=True)
        return loss + probe_loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        images, labels = batch
        logits = self.online_probe(self.encoder(self.to_float(images)))
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
