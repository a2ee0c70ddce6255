"""The Hebbian rules as plain functions of tensors: inputs x [N, D] (examples, or a conv layer's
patches), weights W [K, D], the units' drive u [N, K]. Each returns the plastic change dW [K, D]
summed over the N inputs, before any normalisation or learning rate."""

from __future__ import annotations

import torch


def lebesgue(weight: torch.Tensor, p: float) -> torch.Tensor:
    """sign(W) |W|^(p-1): with it, u = x @ lebesgue(W).T is Krotov & Hopfield's <W, x>_p (p = 2:
    the ordinary dot product)."""
    return weight if p == 2 else weight.sign() * weight.abs().pow(p - 1)


def softhebb(x: torch.Tensor, weight: torch.Tensor, u: torch.Tensor, t_invert: float) -> torch.Tensor:
    """SoftHebb: y = softmax(t_invert u) over the units, negated for every unit but the winner;
    dW_k = sum_n y_nk (x_n - u_nk W_k)."""
    y = torch.softmax(t_invert * u, dim=1)
    sign = torch.full_like(y, -1.0)
    sign.scatter_(1, u.argmax(dim=1, keepdim=True), 1.0)
    y = sign * y
    return _oja_like(x, weight, u, y)


def krotov_hopfield(x: torch.Tensor, weight: torch.Tensor, u: torch.Tensor, rank: int, delta: float) -> torch.Tensor:
    """Krotov & Hopfield: g = 1 for each input's most active unit, -delta for its `rank`-th most
    active, 0 for the others; dW_k = sum_n g_nk (x_n - u_nk W_k)."""
    order = u.topk(min(rank, u.shape[1]), dim=1).indices
    g = torch.zeros_like(u)
    if u.shape[1] >= rank:
        g.scatter_(1, order[:, rank - 1:rank], -delta)
    g.scatter_(1, order[:, :1], 1.0)
    return _oja_like(x, weight, u, g)


def _oja_like(x: torch.Tensor, weight: torch.Tensor, u: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """sum_n y_nk (x_n - u_nk W_k) = y^T x - (sum_n y_nk u_nk) W_k."""
    return y.T @ x - (y * u).sum(dim=0)[:, None] * weight


def normalised(change: torch.Tensor) -> torch.Tensor:
    """The change divided by its largest magnitude (both papers' code): the largest step is the
    learning rate, whatever the batch size or the input's scale."""
    return change / change.abs().max().clamp_min(1e-30)


def adaptive_rate(weight: torch.Tensor, power: float) -> torch.Tensor:
    """SoftHebb's per-unit rate factor |‖W_k‖_2 - 1|^power [K, 1] (the rule's fixed point has norm 1)."""
    if power == 0:
        return torch.ones(weight.shape[0], 1, dtype=weight.dtype, device=weight.device)
    return ((weight.norm(dim=1, keepdim=True) - 1).abs() + 1e-10).pow(power)
