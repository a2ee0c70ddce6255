"""A convolutional spiking network trained by backpropagation through time with surrogate
gradients. Each layer runs over the whole spike sequence at once: the convolution (or linear map)
on all T steps folded into the batch, then the fused LIF sequence."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.models.base import Supervised
from pipeline.models.spiking import SNNConvSpec, figures, stats
from pipeline.models.spiking.encoding import encode
from pipeline.models.spiking.neurons import lif_layer
from pipeline.spec.components import TrainSpec


def _over_time(layer: nn.Module, spikes: torch.Tensor) -> torch.Tensor:
    """Apply a stateless layer to every step of [T, B, ...] at once."""
    t, b = spikes.shape[:2]
    out = layer(spikes.flatten(0, 1))
    return out.view(t, b, *out.shape[1:])


class SpikingConvEncoder(nn.Module):
    """Image -> spikes (the spec's encoding) -> conv/LIF/pool blocks -> a LIF layer; as features
    for the probes, that layer's firing rates [B, hidden]."""

    def __init__(self, spec: SNNConvSpec, input_shape: tuple[int, ...]):
        super().__init__()
        self.spec = spec
        channels, side = input_shape[0], input_shape[1]
        self.convs = nn.ModuleList()
        for width in spec.channels:
            self.convs.append(nn.Conv2d(channels, width, 3, padding=1))
            channels, side = width, side // 2
        self.flat = channels * side * side
        self.fc = nn.Linear(self.flat, spec.hidden)
        self.out_dim = spec.hidden
        # The leak scales every input by (1 - alpha): scale the initial weights back up, or the
        # membranes never reach threshold and the network starts silent (and learns nothing).
        with torch.no_grad():
            for layer in (*self.convs, self.fc):
                layer.weight.mul_(2 / (1 - spec.neuron.alpha))

    def run(self, images: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(hidden spikes [T, B, hidden], every layer's input spikes and the hidden potentials)."""
        encoding = self.spec.encoding
        record = {}
        spikes = None if encoding.kind == "direct" else encode(images, encoding)
        for index, conv in enumerate(self.convs):
            if spikes is None:  # direct: one constant current, computed once, for every step
                current = conv(images)
                currents = current.expand(encoding.steps, *current.shape)
                record["conv1_in"] = images
            else:
                record[f"conv{index + 1}_in"] = spikes
                currents = _over_time(conv, spikes)
            spikes, _ = lif_layer(currents, self.spec.neuron, self.spec.surrogate)
            record[f"conv{index + 1}"] = spikes
            spikes = _over_time(lambda x: F.max_pool2d(x, 2), spikes)  # stays binary: a spike if any
        flat = spikes.flatten(2)
        record["fc_in"] = flat
        hidden, potentials = lif_layer(_over_time(self.fc, flat), self.spec.neuron, self.spec.surrogate)
        record["fc"] = hidden
        record["fc_potentials"] = potentials
        return hidden, record

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.run(images)[0].mean(dim=0)


class SNNConv(Supervised):
    def __init__(self, spec: SNNConvSpec, train: TrainSpec, input_shape: tuple[int, ...], num_classes: int):
        spec.check_input(input_shape)
        super().__init__(SpikingConvEncoder(spec, input_shape), train)
        self.spec = spec
        self.input_shape = tuple(input_shape)
        self.readout = nn.Linear(spec.hidden, num_classes)

    def readout_potentials(self, hidden: torch.Tensor) -> torch.Tensor:
        """A non-spiking leaky integrator per class, u <- alpha u + (1 - alpha) W z: [T, B, classes]."""
        alpha = self.spec.neuron.alpha
        drive = _over_time(self.readout, hidden) * (1 - alpha)
        potentials, u = [], torch.zeros_like(drive[0])
        for step in drive:
            u = alpha * u + step
            potentials.append(u)
        return torch.stack(potentials)

    def classify(self, images: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.encoder.run(images)
        return self.readout_potentials(hidden).mean(dim=0)

    def layer_counts(self, record: dict[str, torch.Tensor], batch: int) -> list[stats.LayerCount]:
        """Spikes, synaptic operations, neuron updates and the same-shaped ANN's MACs and per-neuron
        operations per layer, per sample (`stats` has the rules). Each LIF neuron updates at every
        step; the readout integrates at every step and is averaged over all of them."""
        layers = []
        side = self.input_shape[1]
        neuron = self.spec.neuron
        adaptive, refractory = neuron.kind == "alif", bool(neuron.refractory)
        for index, conv in enumerate(self.encoder.convs):
            inputs, outputs = record[f"conv{index + 1}_in"], record[f"conv{index + 1}"]
            macs = side * side * conv.out_channels * conv.in_channels * 9
            if index == 0 and self.spec.encoding.kind == "direct":  # analog input: one pass of MACs
                reached, analog = 0.0, macs * inputs.shape[0] / batch
            else:
                # Each input spike drives every output channel at every position whose 3x3 window
                # holds it: count the active inputs in each window, times the output channels.
                window = torch.ones(1, conv.in_channels, 3, 3)
                reached, analog = F.conv2d(inputs.flatten(0, 1).float(), window, padding=1).sum().item(), 0.0
            spikes = outputs.sum().item()
            mults, adds = stats.neuron_updates(outputs.numel(), spikes, adaptive, refractory)
            size = outputs[0, 0].numel()
            layers.append(stats.LayerCount(
                f"conv{index + 1}", size, spikes / batch, reached * conv.out_channels / batch, macs, analog,
                mults / batch, adds / batch, 2 * size))
            side //= 2
        fc_in, hidden = record["fc_in"], record["fc"]
        spikes = hidden.sum().item()
        mults, adds = stats.neuron_updates(hidden.numel(), spikes, adaptive, refractory)
        width = self.spec.hidden
        layers.append(stats.LayerCount("fc", width, spikes / batch, fc_in.sum().item() * width / batch,
                                       self.encoder.flat * width, 0.0, mults / batch, adds / batch, 2 * width))
        classes = self.readout.out_features
        output_steps = hidden.shape[0] * hidden.shape[1] * classes
        mults, adds = stats.readout_updates(output_steps, output_steps)
        layers.append(stats.LayerCount("readout", 0, 0.0, spikes * classes / batch, self.spec.hidden * classes,
                                       0.0, mults / batch, adds / batch, classes))
        return layers

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        return self.classify(images).argmax(dim=1)

    @torch.no_grad()
    def spike_batch(self, images: torch.Tensor, keep_first: bool = False) -> stats.SpikeBatch:
        hidden, record = self.encoder.run(images)
        predicted = self.readout_potentials(hidden).mean(dim=0).argmax(dim=1)
        counts = self.layer_counts({k: v.cpu() for k, v in record.items()}, batch=1)  # batch totals
        first = {k: v[:, 0].cpu() for k, v in record.items()} if keep_first else None
        return stats.SpikeBatch(predicted, counts, first, self.spec.encoding.steps)

    def spike_pictures(self, first: dict[str, torch.Tensor], label: str, classes: tuple[str, ...],
                       out: Path) -> list[Path]:
        return [
            figures.raster(first["fc"], f"fc layer spikes, one test image ({label})", out / "spike_raster.png",
                         input_spikes=None if self.spec.encoding.kind == "direct" else first["conv1_in"].flatten(1)),
            figures.membrane_trace(first["fc_potentials"][:, :5], first["fc"][:, :5], self.spec.neuron.threshold,
                                 f"fc layer membrane potentials, one test image ({label})", out / "membrane_trace.png"),
        ]
