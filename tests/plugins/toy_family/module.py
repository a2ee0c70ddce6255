"""The toy MLP as the pipeline builds a family: Class(model_spec, train_spec, input_shape, num_classes)."""

from __future__ import annotations

import math

import torch
from torch import nn

from pipeline.models.base import Supervised


class ToyMLP(Supervised):
    def __init__(self, spec, train, input_shape: tuple[int, ...], num_classes: int):
        layers, width = [nn.Flatten()], math.prod(input_shape)
        for units in spec.hidden:
            layers += [nn.Linear(width, units), nn.ReLU()]
            width = units
        encoder = nn.Sequential(*layers)
        encoder.out_dim = width
        super().__init__(encoder, train)
        self.head = nn.Linear(width, num_classes)

    def classify(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(inputs))
