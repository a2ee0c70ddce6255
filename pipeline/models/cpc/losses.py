"""CPC's objectives as pure functions of tensors: the codes, the context, and one prediction head
per offset (any callable context -> predicted code, e.g. the `nn.Linear`s of `offset_predictors`).
Each returns (the mean of the per-offset InfoNCE losses, each offset's loss, each offset's
accuracy), as `per_offset_info_nce` does; the LightningModules in `image.py` and `sequence.py`
call them with their own networks."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from pipeline.models.cpc.infonce import per_offset_info_nce

Predictor = Callable[[torch.Tensor], torch.Tensor]
Losses = tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]


def _candidates(codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes [B, *positions, D] (channels last) -> (every code of the batch as a candidate [N, D],
    the index of each position's code among them [B, *positions])."""
    count = codes.shape[:-1].numel()
    candidates = codes.reshape(count, codes.shape[-1])
    return candidates, torch.arange(count, device=codes.device).view(codes.shape[:-1])


def grid_cpc_loss(codes: torch.Tensor, context: torch.Tensor, offsets: Sequence[int],
                  predictors: Sequence[Predictor]) -> Losses:
    """CPC v2 on a patch grid: codes [B, D, R, Q], a causal context [B, H, R, Q] (its row i sees
    rows <= i of the codes). For each offset k, with its head W_k: the context of every patch
    with a row k below it, mapped by W_k ([N, H] -> [N, D]), scored against every code of the
    batch (B * R * Q candidates), the code k rows below being the true one."""
    candidates, index = _candidates(codes.permute(0, 2, 3, 1))
    rows, width = codes.shape[2], context.shape[1]

    def terms():
        for offset, predictor in zip(offsets, predictors, strict=True):
            sources = context[:, :, : rows - offset].permute(0, 2, 3, 1).reshape(-1, width)
            targets = index[:, offset:].reshape(-1)  # the patch `offset` rows below each context
            yield predictor(sources), candidates, targets, None

    return per_offset_info_nce(terms())


def sequence_cpc_loss(codes: torch.Tensor, context: torch.Tensor, offsets: Sequence[int],
                      predictors: Sequence[Predictor], same_sequence_negatives: bool = False) -> Losses:
    """CPC on sequences: codes [B, T, D], a causal context [B, T, H] (step t sees codes <= t). For
    each future step k, with its head W_k: the context at every step t < T - k, mapped by W_k
    ([B, T - k, H] -> [B, T - k, D]), scored against the code at t + k of its own sequence and
    negatives: the codes of the other sequences at that same step (B candidates), or with
    `same_sequence_negatives` every code of the batch (B * T candidates)."""
    b, t, d = codes.shape
    candidates, index = _candidates(codes)
    time = torch.arange(t, device=codes.device).repeat(b)  # the step of each candidate

    def terms():
        for k, predictor in zip(offsets, predictors, strict=True):
            targets = index[:, k:].reshape(-1)
            allowed = None
            if not same_sequence_negatives:
                # Negatives: the other sequences' codes at the target's own step.
                allowed = time[None, :] == time[targets][:, None]
            yield predictor(context[:, : t - k]).reshape(-1, d), candidates, targets, allowed

    return per_offset_info_nce(terms())
