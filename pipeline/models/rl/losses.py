"""The value losses as pure functions of tensors: DQN's TD target, C51's projection of the target
distribution onto the fixed support, and QR-DQN's quantile Huber loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def td_target(rewards: torch.Tensor, dones: torch.Tensor, next_values: torch.Tensor, gamma: float) -> torch.Tensor:
    """r + gamma (1 - done) V(s'), [B] (or [B, N] for a distribution's atoms or quantiles)."""
    if next_values.dim() > rewards.dim():
        rewards, dones = rewards[:, None], dones[:, None]
    return rewards + gamma * (1.0 - dones) * next_values


def dqn_loss(q_taken: torch.Tensor, next_q_target: torch.Tensor, rewards: torch.Tensor, dones: torch.Tensor,
             gamma: float, next_q_online: torch.Tensor | None = None) -> torch.Tensor:
    """Huber loss between Q(s, a) [B] and the TD target from the target network's next Q-values
    [B, A]: the max over actions, or (Double DQN, with `next_q_online`) the value of the action the
    online network prefers."""
    if next_q_online is None:
        next_values = next_q_target.max(dim=1).values
    else:
        next_values = next_q_target.gather(1, next_q_online.argmax(dim=1, keepdim=True)).squeeze(1)
    return F.smooth_l1_loss(q_taken, td_target(rewards, dones, next_values, gamma).detach())


def c51_projection(next_probabilities: torch.Tensor, rewards: torch.Tensor, dones: torch.Tensor,
                   support: torch.Tensor, gamma: float) -> torch.Tensor:
    """The target distribution [B, K] on `support` [K] (evenly spaced): each atom z_j of the next
    state's distribution [B, K] moves to r + gamma (1 - done) z_j, clipped to the support, and its
    probability is split between the two nearest atoms in proportion to closeness."""
    atoms = len(support)
    v_min, v_max = float(support[0]), float(support[-1])
    delta = (v_max - v_min) / (atoms - 1)
    moved = td_target(rewards, dones, support[None, :].expand(len(rewards), -1), gamma).clamp(v_min, v_max)
    # In [0, K - 1]; clamped again because rounding can put v_max a hair past the last atom.
    position = ((moved - v_min) / delta).clamp(0, atoms - 1)
    lower, upper = position.floor().long(), position.ceil().long()
    exact = (lower == upper).to(next_probabilities.dtype)  # landed on an atom: all of it goes there
    projected = torch.zeros_like(next_probabilities)
    projected.scatter_add_(1, lower, next_probabilities * (upper.to(position.dtype) - position + exact))
    projected.scatter_add_(1, upper, next_probabilities * (position - lower.to(position.dtype)))
    return projected


def c51_loss(logits_taken: torch.Tensor, target_distribution: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the taken action's predicted distribution (logits [B, K]) against the
    projected target [B, K], averaged over the batch."""
    return -(target_distribution.detach() * F.log_softmax(logits_taken, dim=1)).sum(dim=1).mean()


def quantile_midpoints(count: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """tau_i = (2i + 1) / 2N, i = 0..N-1: the quantile levels QR-DQN's outputs stand for."""
    return (torch.arange(count, device=device, dtype=dtype) * 2 + 1) / (2 * count)


def quantile_huber_loss(quantiles: torch.Tensor, targets: torch.Tensor, taus: torch.Tensor,
                        kappa: float = 1.0) -> torch.Tensor:
    """QR-DQN's loss: quantiles [B, N] at levels taus [N] against target samples [B, M]; for each
    pair u = target_j - quantile_i, |tau_i - 1{u < 0}| Huber_kappa(u) / kappa, averaged over the
    targets, summed over the quantiles, averaged over the batch."""
    u = targets.detach()[:, None, :] - quantiles[:, :, None]  # [B, N, M]
    absolute = u.abs()
    huber = torch.where(absolute <= kappa, 0.5 * u ** 2, kappa * (absolute - 0.5 * kappa))
    weight = (taus[None, :, None] - (u.detach() < 0).to(u.dtype)).abs()
    return (weight * huber / kappa).mean(dim=2).sum(dim=1).mean()
