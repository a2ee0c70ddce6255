"""InfoNCE (van den Oord et al. 2018): a softmax over candidates, one of which is the true target."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def info_nce(predictions: torch.Tensor, candidates: torch.Tensor, targets: torch.Tensor,
             allowed: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, accuracy) of predictions [N, D] scored by dot product against candidates [M, D]:
    cross-entropy of picking the candidate `targets[n]`, and how often it ranks first.
    `allowed` [N, M] (bool) limits the candidates of each prediction (the target must be
    allowed); without it every candidate competes, so at chance the loss is ln(M).
    Computed in float32 even under mixed precision."""
    with torch.autocast(device_type=predictions.device.type, enabled=False):
        logits = predictions.float() @ candidates.float().T
        if allowed is not None:
            logits = logits.masked_fill(~allowed, float("-inf"))
        loss = F.cross_entropy(logits, targets)
        accuracy = (logits.detach().argmax(dim=1) == targets).float().mean()
    return loss, accuracy


def per_offset_info_nce(terms) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """CPC's objective over its offsets: `terms` yields (predictions, candidates, targets, allowed)
    per offset; returns the mean of the per-offset losses, and each offset's loss and accuracy."""
    losses, accuracies = [], []
    for predictions, candidates, targets, allowed in terms:
        loss, accuracy = info_nce(predictions, candidates, targets, allowed)
        losses.append(loss)
        accuracies.append(accuracy)
    return torch.stack(losses).mean(), losses, accuracies


def offset_predictors(count: int, context_dim: int, code_dim: int) -> nn.ModuleList:
    """One linear map W_k per offset, context -> predicted code, each its own parameters. Small at
    first, so the loss starts near ln(candidates) rather than at whatever random projections give."""
    predictors = nn.ModuleList(nn.Linear(context_dim, code_dim, bias=False) for _ in range(count))
    for predictor in predictors:
        nn.init.normal_(predictor.weight, std=0.01 / context_dim ** 0.5)
    return predictors


class PerOffsetMetrics:
    """For a CPC LightningModule with `offsets` (the row offsets or future steps it predicts):
    logs each offset's InfoNCE loss and accuracy, and draws the accuracies over training."""

    offsets: list[int]
    offset_title = "InfoNCE accuracy per offset (true target ranked first)"

    def log_offsets(self, losses: list[torch.Tensor], accuracies: list[torch.Tensor], batch_size: int) -> None:
        from pipeline.lightning_internals import attached_trainer

        if attached_trainer(self) is None:  # called outside a Trainer (tests, tools)
            return
        for offset, loss, accuracy in zip(self.offsets, losses, accuracies, strict=True):
            self.log(f"train/infonce_loss_k{offset}", loss, on_step=False, on_epoch=True,
                     batch_size=batch_size, sync_dist=True)
            self.log(f"train/infonce_acc_k{offset}", accuracy, on_step=True, on_epoch=True,
                     batch_size=batch_size, sync_dist=True)

    def plot_groups(self) -> dict[str, tuple[str, list[str]]]:
        groups = super().plot_groups()
        groups["infonce_accuracy"] = (self.offset_title, [f"train/infonce_acc_k{k}_step" for k in self.offsets])
        return groups
