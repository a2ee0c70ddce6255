"""Recurrent independent mechanisms (Goyal et al. 2021) as a recurrent `Core`: K cells with weights
of their own, k of them updated per step, chosen by input attention against a null input, and
reading each other through communication attention. The K cells run as one batched cell (weights
[K, ...], einsum over the module axis), so a step costs a few kernels whatever K is."""

from __future__ import annotations

import math

import torch
from torch import nn

from pipeline.models.continuous import RIMsSpec
from pipeline.models.continuous.module import Core, State, _CoreKind


def _uniform(*shape: int, fan_in: int) -> nn.Parameter:
    bound = 1 / math.sqrt(fan_in)
    return nn.Parameter(torch.empty(*shape).uniform_(-bound, bound))


class ModuleCells(nn.Module):
    """K GRU or LSTM cells with weights of their own, stepped together: inputs [B, K, I], state
    [B, K, H] (a pair (h, c) for LSTM) -> the new state of every module."""

    def __init__(self, cell: str, modules: int, in_dim: int, hidden: int):
        super().__init__()
        gates = 3 if cell == "gru" else 4
        self.cell, self.hidden = cell, hidden
        self.w_input = _uniform(modules, in_dim, gates * hidden, fan_in=hidden)
        self.w_hidden = _uniform(modules, hidden, gates * hidden, fan_in=hidden)
        self.b_input = _uniform(modules, gates * hidden, fan_in=hidden)
        self.b_hidden = _uniform(modules, gates * hidden, fan_in=hidden)

    def forward(self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor | None = None):
        gi = torch.einsum("bki,kig->bkg", x, self.w_input) + self.b_input
        gh = torch.einsum("bkh,khg->bkg", h, self.w_hidden) + self.b_hidden
        if self.cell == "gru":  # as torch.nn.GRUCell
            i_r, i_z, i_n = gi.chunk(3, dim=2)
            h_r, h_z, h_n = gh.chunk(3, dim=2)
            reset, update = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
            candidate = torch.tanh(i_n + reset * h_n)
            return (1 - update) * candidate + update * h, None
        i, f, g, o = (gi + gh).chunk(4, dim=2)  # as torch.nn.LSTMCell
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c


class RIMsCore(Core):
    """Reads [B, L, C] step by step; its output at each step is every module's state, concatenated
    [B, L, K * H]."""

    def __init__(self, spec: RIMsSpec, in_dim: int):
        super().__init__()
        k, h = spec.modules, spec.hidden
        self.spec = spec
        self.in_dim, self.neurons, self.out_dim = in_dim, k * h, k * h
        # Input attention: a query per module from its state; a key and a value of the step's input
        # (the null input, zeros, gets key and value from the biases alone).
        self.input_query = _uniform(k, h, spec.input_key, fan_in=h)
        self.input_key = nn.Linear(in_dim, spec.input_key)
        self.input_value = nn.Linear(in_dim, spec.input_value)
        self.cells = ModuleCells(spec.cell, k, spec.input_value, h)
        # Communication attention between the modules' new states.
        self.comm_query = _uniform(k, h, spec.communication_key, fan_in=h)
        self.comm_key = _uniform(k, h, spec.communication_key, fan_in=h)
        self.comm_value = _uniform(k, h, h, fan_in=h)

    def initial(self, batch: int, device, dtype) -> tuple[torch.Tensor, torch.Tensor | None]:
        zeros = torch.zeros(batch, self.spec.modules, self.spec.hidden, device=device, dtype=dtype)
        return zeros, (zeros.clone() if self.spec.cell == "lstm" else None)

    def keys_values(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The input attention's keys [..., 2, d] and values [..., 2, v] of inputs x [..., C]: the null
        input's (zeros: the biases alone) first, then the input's."""
        keys = torch.stack([self.input_key.bias.expand(*x.shape[:-1], -1), self.input_key(x)], dim=-2)
        values = torch.stack([self.input_value.bias.expand(*x.shape[:-1], -1), self.input_value(x)], dim=-2)
        return keys, values

    def step(self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor | None,
             keys_values: tuple[torch.Tensor, torch.Tensor] | None = None
             ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """One input [B, C] (its keys and values, when computed for every step at once): the new
        (h, c) and the mask of active modules [B, K]."""
        spec = self.spec
        query = torch.einsum("bkh,khd->bkd", h, self.input_query)  # [B, K, d]
        keys, values = keys_values if keys_values is not None else self.keys_values(x)  # [B, 2, d], [B, 2, v]
        attention = torch.softmax(torch.einsum("bkd,bnd->bkn", query, keys) / math.sqrt(spec.input_key), dim=2)
        # The k modules that attend most to the real input (least to the null one) are active.
        chosen = attention[:, :, 1].topk(spec.active, dim=1).indices
        mask = torch.zeros_like(attention[:, :, 1], dtype=torch.bool).scatter_(1, chosen, True)  # [B, K]
        read = torch.einsum("bkn,bnv->bkv", attention, values)
        keep = mask[:, :, None]
        updated, new_c = self.cells(read, h, c)
        # Inactive modules keep their state: nothing of this step's cell update reaches their weights.
        h_cell = torch.where(keep, updated, h)
        q = torch.einsum("bkh,khd->bkd", h_cell, self.comm_query)
        kk = torch.einsum("bkh,khd->bkd", h_cell, self.comm_key)
        v = torch.einsum("bkh,khd->bkd", h_cell, self.comm_value)
        talk = torch.softmax(torch.einsum("bkd,bjd->bkj", q, kk) / math.sqrt(spec.communication_key), dim=2)
        # Active modules read every module's state (an inactive one's as it was kept), residually.
        h = torch.where(keep, h_cell + torch.einsum("bkj,bjd->bkd", talk, v), h)
        c = torch.where(keep, new_c, c) if c is not None else None
        return h, c, mask

    def forward(self, x: torch.Tensor, elapsed: torch.Tensor, state: State = None) -> tuple[torch.Tensor, State]:
        batch = x.shape[0]
        h, c = state if state is not None else self.initial(batch, x.device, x.dtype)
        keys, values = self.keys_values(x)  # every step's at once: [B, L, 2, d], [B, L, 2, v]
        outputs = []
        for t in range(x.shape[1]):
            h, c, _ = self.step(x[:, t], h, c, (keys[:, t], values[:, t]))
            outputs.append(h.reshape(batch, -1))
        return torch.stack(outputs, dim=1), (h, c)

    def synapses(self) -> tuple[int, int]:
        """Counted dense: each cell reads its own units only, but communication attention lets every
        module's state reach every active module, and input attention the input every module."""
        dense = (self.in_dim + self.neurons) * self.neurons
        return dense, dense


class RIMs(_CoreKind):
    core_type = RIMsCore
