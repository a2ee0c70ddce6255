"""k-winners-take-all with boosting, and fixed sparse weight masks (see the package docstring).
Plain modules any supervised network can use."""

from __future__ import annotations

import math

import torch
from torch import nn

from pipeline.models.sparse import KWinnersSpec


def boost_factors(duty_cycle: torch.Tensor, target: float, strength: float) -> torch.Tensor:
    """exp(beta (a - d_i)) per unit: above 1 for a unit active less often than the target density."""
    return torch.exp((target - duty_cycle) * strength)


def k_winners(x: torch.Tensor, k: int, boost: torch.Tensor) -> torch.Tensor:
    """x [B, n] with all but each row's k largest of x * boost (boost [n], for the choice only)
    zeroed; the winners keep their own, unboosted values (and their gradients)."""
    chosen = (x.detach() * boost).topk(k, dim=1).indices
    mask = torch.zeros_like(x).scatter_(1, chosen, 1.0)
    return x * mask


class KWinners(nn.Module):
    """k-winners over a dense layer's units ([B, n]) or a conv layer's whole map ([B, C, H, W],
    duty cycles per channel)."""

    def __init__(self, spec: KWinnersSpec, units: int):
        super().__init__()
        self.spec = spec
        self.register_buffer("duty_cycle", torch.zeros(units))
        self.register_buffer("boost_strength", torch.tensor(float(spec.boost_strength)))
        self.register_buffer("seen", torch.tensor(0, dtype=torch.long))

    def k(self, n: int) -> int:
        k = max(1, round(self.spec.percent_on * n))
        return k if self.training else min(n, round(k * self.spec.k_inference_factor))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1)
        per_unit = flat.shape[1] // len(self.duty_cycle)  # a conv map's positions share their channel's boost
        boost = boost_factors(self.duty_cycle, self.spec.percent_on, float(self.boost_strength))
        out = k_winners(flat, self.k(flat.shape[1]), boost.repeat_interleave(per_unit)).view_as(x)
        if self.training:
            self.update_duty_cycle(out)
        return out

    @torch.no_grad()
    def update_duty_cycle(self, out: torch.Tensor) -> None:
        """d <- (d (T - B) + sum of the batch's activity) / T, T = min(period, examples seen): the
        share of the last T examples each unit was active for (a conv channel: averaged over its
        positions)."""
        batch = len(out)
        self.seen += batch
        period = min(self.spec.duty_cycle_period, int(self.seen))
        active = (out > 0).float()
        counts = active.sum(dim=(0, 2, 3)) / (out.shape[2] * out.shape[3]) if out.dim() == 4 else active.sum(dim=0)
        self.duty_cycle.mul_(max(period - batch, 0)).add_(counts).div_(period)

    def decay_boost(self) -> None:
        self.boost_strength.mul_(self.spec.boost_decay)


def sparse_mask(shape: tuple[int, ...], density: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """A {0, 1} mask for a weight [out, ...]: each output unit keeps exactly round(density x fan_in)
    (at least 1) of its incoming weights, chosen at random."""
    out, fan_in = shape[0], math.prod(shape[1:])
    keep = max(1, round(density * fan_in))
    order = torch.rand(out, fan_in, generator=generator).argsort(dim=1)
    mask = torch.zeros(out, fan_in)
    mask.scatter_(1, order[:, :keep], 1.0)
    return mask.view(shape)


class SparseWeights(nn.Module):
    """A Linear or Conv2d whose weight is multiplied by a fixed mask: the masked weights are zero
    in every forward pass and get no gradient."""

    def __init__(self, layer: nn.Linear | nn.Conv2d, density: float):
        super().__init__()
        self.layer = layer
        self.density = density
        self.register_buffer("mask", sparse_mask(tuple(layer.weight.shape), density))
        with torch.no_grad():
            # Kaiming-style scale for the inputs actually connected.
            layer.weight.mul_(self.mask / math.sqrt(density))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.layer.weight * self.mask
        if isinstance(self.layer, nn.Conv2d):
            return self.layer._conv_forward(x, weight, self.layer.bias)
        return nn.functional.linear(x, weight, self.layer.bias)

    def nonzero(self) -> int:
        return int(self.mask.sum()) + (self.layer.bias.numel() if self.layer.bias is not None else 0)
