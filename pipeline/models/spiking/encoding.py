"""Spike encodings: a batch of inputs -> spikes [T, B, ...] (time first).

- rate: Bernoulli spikes, probability gain x per step (x in [0, 1]);
- latency: one spike per input, stronger inputs earlier; linear t = (1 - x)(T - 1), or the
  RC-charging time t = tau ln(x / (x - threshold)) normalised to the window; none below threshold;
- delta: a spike where the signal changes by more than the threshold since the previous step,
  increases and decreases in separate (on/off) channels; time runs along the sequence (an
  image is read row by row);
- direct: the analog input itself, repeated over the steps (a current, not spikes).
"""

from __future__ import annotations

import torch

from pipeline.models.spiking import EncodingSpec


def rate(x: torch.Tensor, spec: EncodingSpec, generator: torch.Generator | None = None) -> torch.Tensor:
    probability = (spec.gain * x.clamp(0, 1)).expand(spec.steps, *x.shape)
    return torch.bernoulli(probability, generator=generator)


def spike_times(x: torch.Tensor, spec: EncodingSpec, continuous: bool = False) -> torch.Tensor:
    """The step of each input's spike (float; inf where it does not spike); `continuous`: the
    time itself in [0, steps - 1], not rounded to a step."""
    x = x.clamp(0, 1)
    last = spec.steps - 1
    if spec.latency == "linear":
        times = (1 - x) * last
    else:
        # Time for an RC circuit driven by x to charge up to the threshold, scaled so that the
        # strongest input (x = 1) fires at 0 and the weakest that fires at most at the last step.
        charge = spec.tau * torch.log(x / (x - spec.threshold).clamp_min(1e-12))
        fastest = spec.tau * torch.log(torch.tensor(1 / (1 - spec.threshold)))
        times = (charge - fastest).clamp(0, last)
    if not continuous:
        times = torch.round(times)
    return torch.where(x > spec.threshold, times, torch.full_like(times, float("inf")))


def latency(x: torch.Tensor, spec: EncodingSpec) -> torch.Tensor:
    times = spike_times(x, spec)
    steps = torch.arange(spec.steps, device=x.device, dtype=x.dtype).view(-1, *([1] * x.dim()))
    return (steps == times.unsqueeze(0)).to(x.dtype)


def delta(x: torch.Tensor, spec: EncodingSpec) -> torch.Tensor:
    """x [B, C, L] (a sequence) or [B, C, H, W] (an image, rows as time) -> [L or H, B, features]."""
    if x.dim() == 4:
        x = x.permute(0, 1, 3, 2).flatten(1, 2)  # [B, C*W, H]: each row a time step
    sequence = x.permute(2, 0, 1)  # [T, B, C]
    change = torch.diff(sequence, dim=0, prepend=torch.zeros_like(sequence[:1]))
    on = (change > spec.threshold).to(x.dtype)
    off = (change < -spec.threshold).to(x.dtype)
    return torch.cat([on, off], dim=-1) if spec.on_off else on + off


def encode(x: torch.Tensor, spec: EncodingSpec, generator: torch.Generator | None = None) -> torch.Tensor:
    if spec.kind == "rate":
        return rate(x, spec, generator)
    if spec.kind == "latency":
        return latency(x, spec)
    if spec.kind == "direct":
        return x.expand(spec.steps, *x.shape)
    return delta(x, spec)
