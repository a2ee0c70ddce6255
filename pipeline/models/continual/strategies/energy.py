"""The energy-based classifier (Li, Du & Mordatch 2022, "Energy-Based Models for Continual
Learning"). E(x, y) = g(relu(f(x) * (1 + e_y / |e_y|))): the network's features f(x) gated by a
learnt embedding e_y of the label (unit-normalised, around 1), through g (a linear map, or a
hidden layer and one) to one number. Training lowers the true
label's energy against the labels of the current experience only, a softmax over their negative
energies: a new class never pushes an old one's energy up, which is what makes a softmax
classifier forget in a class-incremental stream. A prediction is the label of lowest energy
among every class seen so far. Keeps nothing but the set of classes seen."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.data.datamodule import Fields, model_input
from pipeline.models.continual.strategies import Strategy


class EnergyBased(Strategy):
    def __init__(self, spec, net):
        super().__init__(spec, net)
        features = net.encoder.out_dim
        width = spec.embedding_dim or features
        self.label_embedding = nn.Embedding(net.num_classes, width)
        self.project = nn.Linear(features, width) if spec.embedding_dim else nn.Identity()
        self.energy_net = nn.Sequential(nn.Linear(width, spec.hidden), nn.ReLU(), nn.Linear(spec.hidden, 1)) \
            if spec.hidden else nn.Linear(width, 1)
        self.register_buffer("seen_classes", torch.zeros(net.num_classes, dtype=torch.bool))
        # The network's own head is not used: it would only take weight decay.
        for parameter in net.head.parameters():
            parameter.requires_grad_(False)

    def energies(self, inputs: torch.Tensor) -> torch.Tensor:
        """E(x, y) for every class y: [B, C]."""
        features = self.project(self.net.encoder(model_input(inputs)))
        gate = 1 + F.normalize(self.label_embedding.weight, dim=1)
        gated = F.relu(features[:, None, :] * gate[None])
        return self.energy_net(gated).squeeze(-1)

    def loss(self, batch: Fields) -> torch.Tensor:
        allowed = self.current_classes()
        if self.net.spec.scenario.type == "task_incremental":
            allowed = self.net.task_classes[batch["task"]]
        scores = (-self.energies(batch["input"])).masked_fill(~allowed, float("-inf"))
        return F.cross_entropy(scores, batch["label"])

    def scores(self, inputs: torch.Tensor, task: torch.Tensor | None) -> torch.Tensor:
        seen = self.seen_classes | self.current_classes()  # during a phase, its classes count as seen
        scores = (-self.energies(inputs)).masked_fill(~seen, float("-inf"))
        return self.net.mask(scores, task)

    def end_experience(self, index: int) -> None:
        self.seen_classes[list(self.experiences[index].classes)] = True
