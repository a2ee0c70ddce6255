"""The neural ODE classifier (Chen et al. 2018) and the ResNet block it generalises: a Conv1d
stem, then either dh/dt = f(h) integrated by `torchdiffeq` from 0 to t_end, or h + f(h) (one
Euler step of size 1 of the same dynamics), then average pooling over the sequence and a linear
head. Both blocks count the evaluations of f in their last forward pass (`nfe`), the ODE's cost
that the network_stats task reports."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.extras import require
from pipeline.models.base import Supervised
from pipeline.models.continuous import NeuralODESpec
from pipeline.spec.components import TrainSpec

FIXED_STEP = frozenset({"rk4", "euler", "midpoint"})


def _torchdiffeq():
    return require("torchdiffeq", "continuous", "the neural ODE block")


def _norm(channels: int) -> nn.GroupNorm:
    """GroupNorm as in Chen et al. (up to 32 groups), in a number of groups that divides `channels`."""
    return nn.GroupNorm(math.gcd(32, channels), channels)


class ODEFunc(nn.Module):
    """f(t, h) = conv(relu(norm(conv(h)))), both convolutions of kernel 3 keeping the length.
    Autonomous (t is ignored): the ResNet block it is compared with has no time either, so the
    two blocks differ only in how f is integrated. Each call adds one to `nfe`."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv1d(channels, channels, 3, padding=1)
        self.norm = _norm(channels)
        self.conv2 = nn.Conv1d(channels, channels, 3, padding=1)
        self.nfe = 0

    def forward(self, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        self.nfe += 1
        return self.conv2(F.relu(self.norm(self.conv1(h))))


class ODEBlock(nn.Module):
    """h(t_end) of dh/dt = func(t, h), h(0) the input, by torchdiffeq's `odeint` (or
    `odeint_adjoint`, whose backward pass solves the adjoint ODE instead of storing the forward
    solver's steps) with the spec's solver and tolerances; fixed-step solvers take steps of
    `step_size` (the last one shorter where it does not divide t_end). `func` is any module
    f(t, h) that counts its calls in `nfe`; `nfe` here is the count of the last forward pass
    (an adjoint backward pass evaluates f again, uncounted here)."""

    def __init__(self, func: nn.Module, spec: NeuralODESpec):
        super().__init__()
        _torchdiffeq()  # a missing solver library is said when the network is built, not at its first step
        self.func = func
        self.solver, self.rtol, self.atol = spec.solver, spec.rtol, spec.atol
        self.options = {"step_size": spec.step_size} if spec.solver in FIXED_STEP else None
        self.t_end, self.adjoint = spec.t_end, spec.adjoint
        self.nfe = 0

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        self.func.nfe = 0
        times = torch.tensor([0.0, self.t_end], dtype=h.dtype, device=h.device)
        solvers = _torchdiffeq()
        integrate = solvers.odeint_adjoint if self.adjoint else solvers.odeint
        path = integrate(self.func, h, times, rtol=self.rtol, atol=self.atol, method=self.solver,
                         options=self.options)
        self.nfe = self.func.nfe
        return path[-1]


class ResBlock(nn.Module):
    """h + func(0, h): the residual block, one Euler step of size 1 of the ODE block's dynamics."""

    def __init__(self, func: nn.Module):
        super().__init__()
        self.func = func
        self.nfe = 0

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        self.func.nfe = 0
        out = h + self.func(torch.zeros((), dtype=h.dtype, device=h.device), h)
        self.nfe = self.func.nfe
        return out


class ODEEncoder(nn.Module):
    """[B, C, L] -> [B, channels]: stem (Conv1d, GroupNorm, ReLU), the block, mean over the steps."""

    def __init__(self, spec: NeuralODESpec, in_channels: int):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv1d(in_channels, spec.channels, 3, padding=1), _norm(spec.channels),
                                  nn.ReLU())
        func = ODEFunc(spec.channels)
        self.block = ODEBlock(func, spec) if spec.block == "ode" else ResBlock(func)
        self.out_dim = spec.channels

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.block(self.stem(inputs)).mean(dim=2)


class NeuralODE(Supervised):
    """The ODE (or ResNet) block's pooled features and a linear head, trained on cross-entropy.
    `nfe`: evaluations of f in the last forward pass (1 for the ResNet block), logged per epoch
    as "train/nfe" (the mean over the epoch's batches)."""

    def __init__(self, spec: NeuralODESpec, train: TrainSpec, input_shape: tuple[int, ...], num_classes: int):
        if not num_classes:
            raise ValueError("neural_ode is a classifier: the data has no labels")
        super().__init__(ODEEncoder(spec, input_shape[0]), train)
        self.head = nn.Linear(spec.channels, num_classes)

    @property
    def nfe(self) -> int:
        return self.encoder.block.nfe

    @nfe.setter
    def nfe(self, value: int) -> None:
        # The network_stats task resets it before its counted pass; the block recounts each pass anyway.
        self.encoder.block.nfe = value

    def classify(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(inputs))

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = super().training_step(batch, batch_idx)
        self.log("train/nfe", float(self.nfe), on_step=False, on_epoch=True, batch_size=len(batch["input"]),
                 sync_dist=True)
        return loss

    def network_stats(self, probe=None) -> dict[str, float]:
        """Neurons: the block's channels, the width of its state at each position (its size
        times the length would count one network's units once per sample read). Synapses: the
        weights of the three convolutions, all dense (used = dense), the head's left out as a
        recurrent kind's readout is. NFE: the solver's function evaluations of one pass, over the
        batch `probe` runs (else since the last reset)."""
        if probe is not None:
            self.nfe = 0
            probe()
        encoder = self.encoder
        convs = [encoder.stem[0], encoder.block.func.conv1, encoder.block.func.conv2]
        synapses = float(sum(conv.weight.numel() for conv in convs))
        return {"parameters": float(sum(p.numel() for p in self.parameters())),
                "neurons": float(encoder.out_dim), "synapses_used": synapses, "synapses_dense": synapses,
                "nfe": float(self.nfe)}
