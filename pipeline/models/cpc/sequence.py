"""CPC on sequences (van den Oord et al. 2018): a strided Conv1d encoder turns the signal into one
code per step, a GRU summarises the codes so far into a context, and a linear predictor per
future step k = 1..K scores the true code k steps ahead against negatives from the batch."""

from __future__ import annotations

import torch
from torch import nn

from pipeline.models.base import SelfSupervised
from pipeline.models.cpc import CPCSequenceSpec
from pipeline.models.cpc.image import ChannelNorm
from pipeline.models.cpc.infonce import PerOffsetMetrics, offset_predictors
from pipeline.models.cpc.losses import sequence_cpc_loss
from pipeline.spec.components import TrainSpec


class _ChannelNorm1d(ChannelNorm):
    """LayerNorm over the channels of each time step alone (GroupNorm over time would let every
    code carry statistics of the whole signal, the future included)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.transpose(1, 2)).transpose(1, 2)


class SequenceEncoder(nn.Module):
    """The encoder used downstream: signal [B, C, L] -> codes [B, D, T] (strided Conv1d) ->
    GRU context [B, T, H] -> pooled over time (mean or last step)."""

    def __init__(self, spec: CPCSequenceSpec, in_channels: int):
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for layer in spec.encoder:
            layers += [nn.Conv1d(channels, layer.channels, layer.kernel, stride=layer.stride,
                                 padding=layer.padding),
                       _ChannelNorm1d(layer.channels), nn.ReLU(inplace=True)]
            channels = layer.channels
        self.codes = nn.Sequential(*layers)
        self.code_dim = channels
        self.gru = nn.GRU(channels, spec.context_dim, batch_first=True)
        self.pooling = spec.pooling
        self.out_dim = spec.context_dim

    def encode(self, signals: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(codes [B, T, D], context [B, T, H])."""
        codes = self.codes(signals).transpose(1, 2)
        context, _ = self.gru(codes)
        return codes, context

    def pool(self, context: torch.Tensor) -> torch.Tensor:
        return context.mean(dim=1) if self.pooling == "mean" else context[:, -1]

    def forward(self, signals: torch.Tensor) -> torch.Tensor:
        return self.pool(self.encode(signals)[1])


def shift_in_time(signals: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Signals [B, C, T] each moved by its own number of samples (positive: later), zeros filling
    the samples shifted in."""
    length = signals.shape[-1]
    source = torch.arange(length, device=signals.device)[None] - shifts[:, None]  # B, T
    inside = (source >= 0) & (source < length)
    index = source.clamp(0, length - 1)[:, None].expand_as(signals)
    return signals.gather(2, index) * inside[:, None].to(signals.dtype)


class CPCSequence(PerOffsetMetrics, SelfSupervised):
    offset_title = "InfoNCE accuracy per future step (true code ranked first)"

    def __init__(self, spec: CPCSequenceSpec, train: TrainSpec, input_shape: tuple[int, ...], num_classes: int):
        spec.check_input(input_shape)
        super().__init__(SequenceEncoder(spec, input_shape[0]), train, num_classes)
        self.spec = spec
        self.offsets = list(range(1, spec.steps + 1))  # future steps k = 1..K
        self.predictors = offset_predictors(len(self.offsets), spec.context_dim, self.encoder.code_dim)

    def augment(self, signals: torch.Tensor) -> torch.Tensor:
        """Per-sequence amplitude scaling, additive noise and a time shift (zeros shifted in at
        one end, samples dropped at the other: the end of a signal never wraps onto its start)."""
        a = self.spec.augment
        b = len(signals)
        if a.scale:
            signals = signals * (1 + a.scale * (2 * torch.rand(b, 1, 1, device=signals.device) - 1))
        if a.noise:
            signals = signals + a.noise * torch.randn_like(signals)
        if a.shift:
            shifts = torch.randint(-a.shift, a.shift + 1, (b,), device=signals.device)
            signals = shift_in_time(signals, shifts)
        return signals

    def cpc_loss(self, codes: torch.Tensor, context: torch.Tensor
                 ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """(mean loss over steps, per-step losses, per-step accuracies) of codes [B, T, D] and
        context [B, T, H] (`sequence_cpc_loss` with this model's predictors and negatives)."""
        return sequence_cpc_loss(codes, context, self.offsets, self.predictors, self.spec.same_sequence_negatives)

    def ssl_step(self, signals: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        codes, context = self.encoder.encode(self.augment(signals))
        loss, losses, accuracies = self.cpc_loss(codes, context)
        self.log_offsets(losses, accuracies, len(signals))
        return loss, self.encoder.pool(context)
