"""InfoNCE (van den Oord et al. 2018): a softmax over candidates, one of which is the true target."""

from __future__ import annotations

import torch
import torch.nn.functional as F


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
