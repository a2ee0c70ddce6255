"""What every family shares: the encoder that downstream tasks read, the optimiser and schedule
from the spec, the hooks the stages call. Self-supervised families add an online linear probe on
detached features that shows learning epoch by epoch; supervised ones train on the labels and
are scored on the test split by the evaluate stage, beside the probes on their features."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.data.datamodule import model_input
from pipeline.spec.components import TrainSpec


@dataclass
class Phase:
    """One fit of a training protocol: a name, its data and its epochs. Most families train in
    one phase; a continual learner has one per experience."""

    name: str
    data: pl.LightningDataModule
    max_epochs: int


class Trainable(pl.LightningModule):
    """A family builds its `encoder` (the module whose features every downstream task reads; it
    has an `out_dim`). Every family is built as Class(model_spec, train_spec, input_shape,
    num_classes); its inputs arrive as float (images in [0, 1]) [B, *input_shape]."""

    def __init__(self, encoder: nn.Module, train: TrainSpec):
        super().__init__()
        self.train_spec = train
        self.encoder = encoder

    def diagnostics(self) -> dict[str, str]:
        """Findings about the run worth a tag (e.g. collapse); empty by default."""
        return {}

    def plot_groups(self) -> dict[str, tuple[str, list[str]]]:
        """The PNGs the pretrain stage draws from the run's metric history when training ends:
        file stem -> (title, MLflow metric names)."""
        return {"training_curves": ("training", ["train/loss_epoch", self.validation_metric])}

    validation_metric = "val/online_probe_acc"

    def no_decay_parameters(self) -> list[nn.Parameter]:
        """Parameters trained without weight decay (e.g. an online probe); none by default."""
        return []

    # --- the training protocol ---

    drop_last = True
    """Whether training drops the last incomplete batch (every step sees a full batch); a fit that
    must see every example (a closed-form readout) sets it False."""

    def phases(self, spec, splits) -> list[Phase]:
        """The fits the training stage runs, in order, in one MLflow run (steps continue from one
        to the next); each is resumable, and a killed run continues with the phase it was in.
        Default: one fit on the training split."""
        from pipeline.data.datamodule import TensorDataModule

        return [Phase("fit", TensorDataModule(spec.data, spec.seed, splits, drop_last=self.drop_last),
                      spec.train.max_epochs)]

    def after_phase(self, index: int, phase: Phase) -> dict[str, float]:
        """Measurements after phase `index` (e.g. accuracy on every experience seen so far),
        logged at step `index`; none by default."""
        return {}

    # --- learning rules that compute their own updates ---

    def as_gradients(self, updates: dict[str, torch.Tensor]) -> torch.Tensor:
        """For a learning rule that computes its own weight updates (e-prop, predictive coding):
        the objective whose gradient is exactly `updates` (parameter name -> update), so
        Lightning's backward leaves each update in .grad and the spec's optimiser, schedule,
        clipping and checkpointing apply unchanged. Return it from training_step."""
        parameters = dict(self.named_parameters())
        return sum((parameters[name] * update.detach()).sum() for name, update in updates.items())

    def configure_optimizers(self):
        spec = self.train_spec.optimizer
        exempt = self.no_decay_parameters()
        exempt_ids = {id(p) for p in exempt}
        groups = [{"params": [p for p in self.parameters() if id(p) not in exempt_ids]}]
        if exempt:
            groups.append({"params": exempt, "weight_decay": 0.0})
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


class SelfSupervised(Trainable):
    """Implements `ssl_step(inputs) -> (loss, features)`; features are encoder outputs of the
    batch for the online probe, which trains (on detached features) where the data has labels."""

    def __init__(self, encoder: nn.Module, train: TrainSpec, num_classes: int):
        super().__init__(encoder, train)
        self.online_probe = nn.Linear(self.encoder.out_dim, num_classes) if num_classes else None

    def ssl_step(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def no_decay_parameters(self) -> list[nn.Parameter]:
        return list(self.online_probe.parameters()) if self.online_probe is not None else []

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        inputs = batch["input"]
        loss, features = self.ssl_step(model_input(inputs))
        batch_size = len(inputs)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=batch_size,
                 sync_dist=True)
        if self.online_probe is None or "label" not in batch:
            return loss
        probe_loss = F.cross_entropy(self.online_probe(features.detach()), batch["label"])
        self.log("train/online_probe_loss", probe_loss, on_epoch=True, on_step=False, batch_size=batch_size,
                 sync_dist=True)
        return loss + probe_loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        if self.online_probe is None or "label" not in batch:
            return
        inputs, labels = batch["input"], batch["label"]
        logits = self.online_probe(self.encoder(model_input(inputs)))
        accuracy = (logits.argmax(dim=1) == labels).float().mean()
        self.log("val/online_probe_acc", accuracy, on_epoch=True, prog_bar=True, batch_size=len(labels),
                 sync_dist=True)


class Supervised(Trainable):
    """Trained on the labels: implements `classify(inputs) -> logits`. Logs the training loss and
    accuracy and the validation accuracy; the evaluate stage scores it on the test split."""

    validation_metric = "val/accuracy"

    def classify(self, inputs: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def predict(self, inputs: torch.Tensor) -> torch.Tensor:
        """Predicted labels [B] (the `network` downstream task scores them)."""
        return self.classify(inputs).argmax(dim=1)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        inputs, labels = batch["input"], batch["label"]
        logits = self.classify(model_input(inputs))
        loss = F.cross_entropy(logits, labels)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(labels),
                 sync_dist=True)
        self.log("train/accuracy", (logits.argmax(dim=1) == labels).float().mean(), on_epoch=True,
                 on_step=False, batch_size=len(labels), sync_dist=True)
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        inputs, labels = batch["input"], batch["label"]
        accuracy = (self.classify(model_input(inputs)).argmax(dim=1) == labels).float().mean()
        self.log("val/accuracy", accuracy, on_epoch=True, prog_bar=True, batch_size=len(labels), sync_dist=True)
