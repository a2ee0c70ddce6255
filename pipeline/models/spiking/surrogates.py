"""Surrogate gradients: the spike is a Heaviside step of x = v - A forward; backward, its
derivative is replaced by a smooth pseudo-derivative psi(x), selected by name."""

from __future__ import annotations

import math

import torch

from pipeline.models.spiking import SurrogateSpec


def pseudo_derivative_(x: torch.Tensor, spec: SurrogateSpec, threshold: float = 1.0) -> torch.Tensor:
    """psi(x), computed in place in x (which it returns): no temporaries, for whole sequences."""
    if spec.name == "fast_sigmoid":
        return x.abs_().mul_(spec.slope).add_(1).pow_(-2)
    if spec.name == "atan":
        return x.mul_(math.pi / 2 * spec.slope).square_().add_(1).reciprocal_().mul_(spec.slope / 2)
    return x.abs_().mul_(-1 / threshold).add_(1).clamp_min_(0).mul_(spec.slope / threshold)


def pseudo_derivative(x: torch.Tensor, spec: SurrogateSpec, threshold: float = 1.0) -> torch.Tensor:
    """psi(x) of the spec's surrogate, x = v - A (x itself is left as it is)."""
    return pseudo_derivative_(x.clone(), spec, threshold)


class _Spike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, spec: SurrogateSpec, threshold: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.spec, ctx.threshold = spec, threshold
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        return grad * pseudo_derivative(x, ctx.spec, ctx.threshold), None, None


def spike(x: torch.Tensor, spec: SurrogateSpec, threshold: float = 1.0) -> torch.Tensor:
    """H(x) forward (0/1 spikes), psi(x) backward."""
    return _Spike.apply(x, spec, threshold)
