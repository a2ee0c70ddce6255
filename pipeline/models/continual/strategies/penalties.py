"""The regularisation strategies' math as pure functions of tensors (one entry per parameter
tensor, in the same order in each argument): EWC's quadratic penalty, SI's surrogate loss and
SI's importance update. The strategies in `regularization.py` call them with what they keep."""

from __future__ import annotations

from collections.abc import Iterable

import torch


def ewc_penalty(params: Iterable[torch.Tensor], anchors: Iterable[torch.Tensor],
                fishers: Iterable[torch.Tensor], ewc_lambda: float) -> torch.Tensor | float:
    """Online EWC's penalty: lambda / 2 * sum_i F_i * (theta_i - theta*_i)^2 over every entry of
    every parameter; its gradient is lambda * F * (theta - theta*). With no parameters, the float 0."""
    total = 0.0
    for param, anchor, fisher in zip(params, anchors, fishers, strict=True):
        total = total + (fisher * (param - anchor) ** 2).sum()
    return 0.5 * ewc_lambda * total


def si_surrogate(params: Iterable[torch.Tensor], anchors: Iterable[torch.Tensor],
                 importances: Iterable[torch.Tensor], si_lambda: float) -> torch.Tensor | int:
    """SI's surrogate loss (Zenke et al. 2017, eq. 4, the term added to the task's loss):
    c * sum_i Omega_i * (theta_i - theta*_i)^2, no 1/2; its gradient is 2 c Omega (theta - theta*)."""
    return si_lambda * sum((importance * (param - anchor) ** 2).sum()
                           for param, anchor, importance in zip(params, anchors, importances, strict=True))


def si_importance(path: torch.Tensor, param: torch.Tensor, anchor: torch.Tensor, xi: float) -> torch.Tensor:
    """What an experience adds to SI's importance Omega of one parameter tensor: its path integral
    omega (sum over steps of -g * delta theta) where positive, over the squared distance the
    parameter moved during the experience plus the damping xi: max(omega, 0) / ((theta - theta*)^2 + xi)."""
    return path.clamp(min=0) / ((param - anchor) ** 2 + xi)
