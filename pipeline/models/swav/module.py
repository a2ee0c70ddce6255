"""SwAV (Caron et al. 2020) as a LightningModule, built from lightly's heads and loss."""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F
from lightly.loss import SwaVLoss
from lightly.models.modules import SwaVProjectionHead, SwaVPrototypes

from pipeline.data.augment import MultiCrop
from pipeline.lightning_internals import attached_trainer
from pipeline.models.backbones import build_backbone
from pipeline.models.base import SelfSupervised
from pipeline.models.swav import SwAVSpec
from pipeline.models.swav.loss import prototype_usage
from pipeline.spec.components import TrainSpec

log = logging.getLogger(__name__)

COLLAPSE_TOLERANCE = 0.01
"""An epoch whose mean loss is within this fraction of ln(K) has learned nothing: collapse."""


class SwAV(SelfSupervised):
    def __init__(self, spec: SwAVSpec, train: TrainSpec, input_shape: tuple[int, ...], num_classes: int):
        super().__init__(build_backbone(spec.backbone, in_channels=input_shape[0]), train, num_classes)
        self.spec = spec
        self.projection = SwaVProjectionHead(self.encoder.out_dim, spec.projection_hidden_dim,
                                             spec.projection_dim)
        self.prototypes = SwaVPrototypes(spec.projection_dim, spec.prototypes,
                                         n_steps_frozen_prototypes=spec.freeze_prototypes_steps)
        self.prototypes.normalize()
        self.criterion = SwaVLoss(
            temperature=spec.temperature,
            sinkhorn_iterations=spec.sinkhorn_iterations,
            sinkhorn_epsilon=spec.sinkhorn_epsilon,
            sinkhorn_gather_distributed=True,
        )
        self.multicrop = MultiCrop(spec.multicrop)
        if spec.queue_length:
            self.register_buffer("queue", torch.zeros(spec.multicrop.large_crops, spec.queue_length,
                                                      spec.projection_dim))
            self.register_buffer("queue_filled", torch.zeros((), dtype=torch.long))
        self.collapsed = False

    def project(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(encoder features, L2-normalised projections)."""
        features = self.encoder(images)
        return features, F.normalize(self.projection(features), dim=1)

    def ssl_step(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        large, small = self.multicrop(images)
        return self.crops_loss(large, small)

    def crops_loss(self, large: list[torch.Tensor], small: list[torch.Tensor]
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """The SwAV loss of views already cropped: codes from the large crops, every other crop
        predicting them. Returns (loss, encoder features of the first large crop)."""
        batch = large[0].shape[0]
        # Crops of one size go through the encoder together.
        features, z_large = self.project(torch.cat(large))
        z_small = self.project(torch.cat(small))[1] if small else None
        # Scores, Sinkhorn and the loss in float32 even under mixed precision: exp(score / eps)
        # with eps = 0.05 needs more than bfloat16's 8 mantissa bits.
        with torch.autocast(device_type=z_large.device.type, enabled=False):
            step = self.global_step
            large_scores = list(self.prototypes(z_large.float(), step).split(batch))
            small_scores = list(self.prototypes(z_small.float(), step).split(batch)) if small else []
            queue_scores = self._queue_scores(step)
            if self.spec.queue_length:
                self._enqueue(z_large.detach().float().view(len(large), batch, -1))
            loss = self.criterion(large_scores, small_scores, queue_scores)
        if attached_trainer(self) is not None:
            self.log("train/prototypes_used", prototype_usage(large_scores[0].detach()),
                     on_step=False, on_epoch=True, batch_size=batch, sync_dist=True)
        return loss, features[:batch]

    @torch.no_grad()
    def _queue_scores(self, step: int) -> list[torch.Tensor] | None:
        if not self.spec.queue_length or self.current_epoch < self.spec.queue_start_epoch:
            return None
        if int(self.queue_filled) < self.spec.queue_length:
            return None
        return [self.prototypes(stored, step).detach() for stored in self.queue]

    @torch.no_grad()
    def _enqueue(self, z: torch.Tensor) -> None:
        n = z.shape[1]
        self.queue[:, n:] = self.queue[:, :-n].clone()
        self.queue[:, :n] = z[:, : self.spec.queue_length]
        self.queue_filled.add_(n).clamp_(max=self.spec.queue_length)

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        # Prototypes live on the unit sphere: renormalised after every optimiser step.
        with torch.no_grad():
            self.prototypes.normalize()

    def on_train_epoch_end(self) -> None:
        loss = self.trainer.callback_metrics.get("train/loss_epoch")
        if loss is None:
            return
        ln_k = math.log(self.spec.prototypes)
        self.log("train/loss_over_ln_k", float(loss) / ln_k)
        past_freeze = self.global_step > self.spec.freeze_prototypes_steps
        if self.current_epoch >= 1 and past_freeze and abs(float(loss) - ln_k) < COLLAPSE_TOLERANCE * ln_k:
            if not self.collapsed:
                log.warning(
                    "SwAV collapse: epoch %d loss %.4f is ln(K) = %.4f (K = %d prototypes): the "
                    "codes are uniform and the encoder learns nothing. Try a lower lr, more "
                    "prototypes frozen for longer, or a queue.",
                    self.current_epoch, float(loss), ln_k, self.spec.prototypes,
                )
            self.collapsed = True

    def diagnostics(self) -> dict[str, str]:
        return {"collapse": str(self.collapsed).lower()}

    def plot_groups(self) -> dict[str, tuple[str, list[str]]]:
        groups = super().plot_groups()
        title, names = groups["training_curves"]
        groups["training_curves"] = (title, [*names, "train/prototypes_used"])
        return groups
