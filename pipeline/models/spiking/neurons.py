"""LIF and ALIF neurons (reset by subtraction, refractory period, time constants from the spec).

Two implementations of the same dynamics:
- `NeuronCell.step`: one time step at a time, through autograd; for recurrent networks, whose
  input at t needs the spikes of t - 1, and as the reference the other is tested against.
- `lif_layer`: a whole input sequence [T, B, N] of a feed-forward LIF layer at once, with a
  hand-written backward pass through time (the loop runs without building an autograd graph
  of T x several nodes: the reason it is fast).
State is zero at the start of every sequence, so every batch starts from rest.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pipeline.models.spiking import NeuronSpec, SurrogateSpec
from pipeline.models.spiking.surrogates import pseudo_derivative_, spike


@dataclass
class NeuronState:
    v: torch.Tensor
    """Membrane potential."""
    z: torch.Tensor
    """Spikes of the last step."""
    b: torch.Tensor
    """Threshold adaptation (ALIF; stays 0 for LIF)."""
    refractory: torch.Tensor
    """Steps left during which the neuron cannot spike."""

    @classmethod
    def rest(cls, shape: tuple[int, ...], like: torch.Tensor) -> NeuronState:
        zeros = torch.zeros(shape, dtype=like.dtype, device=like.device)
        return cls(zeros, zeros, zeros, torch.zeros(shape, dtype=torch.int32, device=like.device))


class NeuronCell:
    """One step of LIF/ALIF dynamics:
        v <- alpha v + (1 - alpha) I - z_prev v_th        (reset by subtraction)
        A  = v_th + beta b                                  (ALIF; LIF: A = v_th)
        z  = H(v - A), forced to 0 while refractory
        b <- rho b + (1 - rho) z"""

    def __init__(self, neuron: NeuronSpec, surrogate: SurrogateSpec):
        self.spec, self.surrogate = neuron, surrogate

    def threshold(self, state: NeuronState) -> torch.Tensor | float:
        if self.spec.kind == "alif":
            return self.spec.threshold + self.spec.beta * state.b
        return self.spec.threshold

    def step(self, current: torch.Tensor, state: NeuronState) -> tuple[torch.Tensor, NeuronState]:
        s = self.spec
        reset = state.z.detach() if s.detach_reset else state.z
        v = s.alpha * state.v + (1 - s.alpha) * current - reset * s.threshold
        z = spike(v - self.threshold(state), self.surrogate, s.threshold)
        refractory = state.refractory
        if s.refractory:
            z = z * (refractory == 0).to(z.dtype)
            refractory = torch.where(z > 0, torch.full_like(refractory, s.refractory), (refractory - 1).clamp_min(0))
        b = s.rho * state.b + (1 - s.rho) * z if s.kind == "alif" else state.b
        return z, NeuronState(v, z, b, refractory)

    def run(self, currents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(spikes, membrane potentials), each [T, ...], of a current sequence [T, ...]."""
        state = NeuronState.rest(currents.shape[1:], currents)
        spikes, potentials = [], []
        for current in currents:
            z, state = self.step(current, state)
            spikes.append(z)
            potentials.append(state.v)
        return torch.stack(spikes), torch.stack(potentials)


class _LIFSequence(torch.autograd.Function):
    """A LIF layer over a whole sequence, reset detached. Backward through time by hand:
        dL/dv_t = dL/dz_t psi_t + dL/dv_t(direct) + alpha dL/dv_{t+1},   dL/dI_t = (1 - alpha) dL/dv_t
    with psi_t = 0 while refractory. Every step writes straight into the output buffers and the
    backward pass works in place in one buffer: a few passes over [T, B, N] in all."""

    @staticmethod
    def forward(ctx, currents: torch.Tensor, spec: NeuronSpec, surrogate: SurrogateSpec):
        ctx.set_materialize_grads(False)  # an unused output gets no gradient tensor of zeros
        alpha, v_th = spec.alpha, spec.threshold
        spikes = torch.empty_like(currents)
        potentials = torch.empty_like(currents)
        free = None
        if spec.refractory:
            left = torch.zeros(currents.shape[1:], dtype=torch.int32, device=currents.device)
            free = torch.empty(currents.shape, dtype=torch.bool, device=currents.device)
        for t in range(currents.shape[0]):
            v, z = potentials[t], spikes[t]
            if t:
                torch.mul(potentials[t - 1], alpha, out=v).add_(currents[t], alpha=1 - alpha)
                v.sub_(spikes[t - 1], alpha=v_th)
            else:
                torch.mul(currents[0], 1 - alpha, out=v)
            torch.ge(v, v_th, out=z)
            if free is not None:
                torch.eq(left, 0, out=free[t])
                z.mul_(free[t])
                left = torch.where(z > 0, spec.refractory, (left - 1).clamp_min(0)).to(torch.int32)
        ctx.save_for_backward(potentials, *(() if free is None else (free,)))
        ctx.spec, ctx.surrogate = spec, surrogate
        return spikes, potentials

    @staticmethod
    def backward(ctx, grad_spikes: torch.Tensor | None, grad_potentials: torch.Tensor | None):
        potentials, *free = ctx.saved_tensors
        spec = ctx.spec
        alpha = spec.alpha
        grad = torch.zeros_like(potentials)
        if grad_spikes is not None:
            grad = pseudo_derivative_(potentials - spec.threshold, ctx.surrogate, spec.threshold)
            grad.mul_(grad_spikes)
            if free:
                grad.mul_(free[0])
        if grad_potentials is not None:
            grad.add_(grad_potentials)
        for t in range(potentials.shape[0] - 2, -1, -1):
            grad[t].add_(grad[t + 1], alpha=alpha)
        return grad.mul_(1 - alpha), None, None


def lif_layer(currents: torch.Tensor, neuron: NeuronSpec, surrogate: SurrogateSpec
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """(spikes, membrane potentials) [T, ...] of a feed-forward layer driven by currents [T, ...].
    LIF with a detached reset runs the fused sequence; ALIF, or a reset with gradient, steps
    through autograd (same dynamics)."""
    if neuron.kind == "lif" and neuron.detach_reset:
        return _LIFSequence.apply(currents, neuron, surrogate)
    return NeuronCell(neuron, surrogate).run(currents)
