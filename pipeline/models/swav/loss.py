"""SwAV's losses as plain functions. The swapped-prediction loss itself is lightly's SwaVLoss."""

from __future__ import annotations

import torch
from lightly.loss.swav_loss import sinkhorn


def sinkhorn_codes(scores: torch.Tensor, epsilon: float = 0.05, iterations: int = 3) -> torch.Tensor:
    """Soft codes Q [B, K] from prototype scores [B, K] by Sinkhorn-Knopp (lightly's): each row
    sums to 1 and the prototypes share the batch equally (each column sums to B / K)."""
    return sinkhorn(scores, iterations=iterations, epsilon=epsilon)


def prototype_usage(scores: torch.Tensor) -> float:
    """Fraction of prototypes that are the best match of at least one sample: near 1/K when
    the representation has collapsed onto one cluster."""
    return scores.argmax(dim=1).unique().numel() / scores.shape[1]
