"""Active dendrites (Iyer et al. 2022, "Avoiding catastrophe: active dendrites enable multi-task
learning in dynamic environments"): hidden layers whose units are gated by dendritic segments
responding to a context vector, with k-winners-take-all on the gated activity; the context a
prototype of the experience, inferred at test time from the input.

Unit i of a layer: u_i = w_i . x + b_i; segment j of unit i responds a_ij = s_ij . c to the
context c; the segment of largest |a_ij| is selected, d_i = a_ij*, and the unit's activity is
u_i sigmoid(d_i); then k-winners keeps the layer's `percent_on` largest."""

from __future__ import annotations

import torch
from torch import nn

from pipeline.models.sparse import KWinnersSpec
from pipeline.models.sparse.layers import KWinners


class Context(nn.Module):
    """Holds the context of the batch the network is running on (set by the learner before each
    forward pass), read by every dendritic layer: a few context vectors [U, D] and each example's
    index into them [B] (a batch shares a handful of prototypes, whose segment responses are
    computed once each)."""

    def __init__(self, standardise: bool = False):
        super().__init__()
        self.standardise = standardise
        self.current: tuple[torch.Tensor, torch.Tensor] | None = None

    def set(self, vectors: torch.Tensor, index: torch.Tensor | None = None) -> None:
        """`vectors` [U, D]; `index` [B] (None: one vector per example, U = B). With `standardise`,
        each vector is shifted and scaled to zero mean and unit variance over its entries."""
        if index is None:
            index = torch.arange(len(vectors), device=vectors.device)
        if self.standardise:
            vectors = (vectors - vectors.mean(dim=1, keepdim=True)) / vectors.std(dim=1, keepdim=True).clamp_min(1e-8)
        self.current = (vectors, index)


def dendritic_gate(u: torch.Tensor, responses: torch.Tensor) -> torch.Tensor:
    """u [B, n] gated by the segment of largest |response| of each unit (responses [B, n, S])."""
    chosen = responses.abs().argmax(dim=2, keepdim=True)
    return u * torch.sigmoid(responses.gather(2, chosen).squeeze(2))


class DendriticLayer(nn.Module):
    def __init__(self, in_features: int, units: int, segments: int, context_dim: int, percent_on: float,
                 context: Context):
        super().__init__()
        self.linear = nn.Linear(in_features, units)
        # Segment weights small and centred (as the paper's sparse init): the gates start near 1/2.
        self.segments = nn.Parameter(torch.empty(units, segments, context_dim).uniform_(-1, 1) / context_dim ** 0.5)
        self.kwinners = KWinners(KWinnersSpec(percent_on=percent_on, boost_strength=0.0, k_inference_factor=1.0),
                                 units)
        self.context = [context]  # a list: not registered as a submodule of every layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        context = self.context[0].current
        if context is None:
            raise RuntimeError("a dendritic layer ran without a context: the learner sets one before each pass")
        vectors, index = context
        responses = torch.einsum("uc,nsc->uns", vectors, self.segments)[index]
        return self.kwinners(dendritic_gate(self.linear(x), responses))


def dendritic_layers(in_features: int, hidden: list[int], segments: int, percent_on: float, context: Context
                     ) -> list[nn.Module]:
    """The hidden layers on the flattened input; every layer's context is a vector of the input's size."""
    layers: list[nn.Module] = []
    width_in = in_features
    for width in hidden:
        layers.append(DendriticLayer(width_in, width, segments, in_features, percent_on, context))
        width_in = width
    return layers


def nearest_prototype(inputs: torch.Tensor, prototypes: torch.Tensor, known: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """(the known prototypes [U, D], each input's nearest among them by Euclidean distance [B]);
    one zero vector for every input where none is known yet."""
    if not bool(known.any()):
        return torch.zeros(1, inputs.shape[1], dtype=inputs.dtype, device=inputs.device), \
            torch.zeros(len(inputs), dtype=torch.long, device=inputs.device)
    candidates = prototypes[known]
    return candidates, torch.cdist(inputs, candidates).argmin(dim=1)
