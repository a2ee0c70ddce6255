"""The dense or sparse CNN (see the package docstring), trained by backprop on the labels."""

from __future__ import annotations

import torch
from torch import nn

from pipeline.models.base import Supervised
from pipeline.models.sparse import KWinnersSpec, SparseCNNSpec
from pipeline.models.sparse.layers import KWinners, SparseWeights
from pipeline.spec.components import TrainSpec


def _weights(layer: nn.Linear | nn.Conv2d, density: float) -> nn.Module:
    return SparseWeights(layer, density) if density < 1 else layer


def _activation(spec: KWinnersSpec | None, units: int) -> nn.Module:
    return KWinners(spec, units) if spec is not None else nn.ReLU()


class SparseEncoder(nn.Module):
    def __init__(self, spec: SparseCNNSpec, input_shape: tuple[int, ...]):
        super().__init__()
        channels, height, width = input_shape
        blocks: list[nn.Module] = []
        for out in spec.channels:
            blocks += [_weights(nn.Conv2d(channels, out, 5, padding=2), spec.conv_density),
                       _activation(spec.conv_kwinners, out), nn.MaxPool2d(2)]
            channels, height, width = out, height // 2, width // 2
        blocks += [nn.Flatten(), _weights(nn.Linear(channels * height * width, spec.hidden), spec.hidden_density),
                   _activation(spec.hidden_kwinners, spec.hidden)]
        self.net = nn.Sequential(*blocks)
        self.out_dim = spec.hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SparseCNN(Supervised):
    def __init__(self, spec: SparseCNNSpec, train: TrainSpec, input_shape: tuple[int, ...], num_classes: int):
        spec.check_input(input_shape)
        super().__init__(SparseEncoder(spec, input_shape), train)
        self.head = nn.Linear(spec.hidden, num_classes)
        self.spec = spec

    def classify(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(inputs))

    def kwinners(self) -> list[KWinners]:
        return [m for m in self.modules() if isinstance(m, KWinners)]

    def on_train_epoch_end(self) -> None:
        for layer in self.kwinners():
            layer.decay_boost()

    def parameter_counts(self) -> dict[str, int]:
        """Every parameter, and those that can be non-zero (a sparse layer's masked weights cannot)."""
        total = sum(p.numel() for p in self.parameters())
        masked = sum(m.layer.weight.numel() - int(m.mask.sum()) for m in self.modules() if isinstance(m, SparseWeights))
        return {"parameters": total, "nonzero_parameters": total - masked}

    def after_phase(self, index: int, phase) -> dict[str, float]:
        return {key: float(value) for key, value in self.parameter_counts().items()}
