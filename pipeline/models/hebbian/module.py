"""The Hebbian network: layers that learn by their rule from their own input and drive, and the
Lightning module that runs the rules in the training stage (see the package docstring).

A layer has two paths with one meaning. `forward` is an ordinary differentiable network (a
convolution or a matrix product, the activation, the pool): what the features, the downstream
tasks and fine-tuning by backprop read. `plastic` computes the same output under no_grad together
with the rule's change to the weights, from the layer's input patches and the units' drive:
the training step runs only `plastic`, so no autograd graph reaches a Hebbian layer, and the
changes reach the optimiser as gradients (`as_gradients`)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.data.datamodule import model_input
from pipeline.evaluators.features import extract_features, linear_probe
from pipeline.models.base import Phase, Trainable
from pipeline.models.hebbian import HebbianLayerSpec, HebbianSpec, rules
from pipeline.spec.components import TrainSpec

PROBE_WEIGHT_DECAY = 1e-4
PROBE_ITERATIONS = 100


def powered_relu(x: torch.Tensor, power: float) -> torch.Tensor:
    """x_+ ^ power, with a finite gradient everywhere (x^0.7 has an infinite slope at 0, which
    times ReLU's zero slope would give NaN)."""
    if power == 1:
        return F.relu(x)
    positive = x > 0
    return x.clamp_min(1e-12).pow(power) * positive


class HebbianLayer(nn.Module):
    """One layer of the stack; `in_shape` is its input's shape without the batch dimension."""

    def __init__(self, spec: HebbianLayerSpec, in_shape: tuple[int, ...], p: float, init_scale: float):
        super().__init__()
        self.spec = spec
        self.p = p
        if spec.type == "conv":
            channels = in_shape[0]
            self.norm = nn.BatchNorm2d(channels, affine=False) if spec.batchnorm else nn.Identity()
            shape = (spec.units, channels, spec.kernel, spec.kernel)
        else:
            features = math.prod(in_shape)
            self.norm = nn.BatchNorm1d(features, affine=False) if spec.batchnorm else nn.Identity()
            shape = (spec.units, features)
        fan_in = math.prod(shape[1:])
        self.weight = nn.Parameter(torch.randn(shape) * (init_scale / math.sqrt(fan_in)))
        pools = {"max": nn.MaxPool2d(4, stride=2, padding=1), "avg": nn.AvgPool2d(4, stride=2, padding=1),
                 "none": nn.Identity()}
        self.pool = pools[spec.pool] if spec.type == "conv" else nn.Identity()

    @property
    def units(self) -> int:
        return self.spec.units

    def matrix(self) -> torch.Tensor:
        """The weights as [K, D] (D: a patch's or the input's size)."""
        return self.weight.view(self.units, -1)

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        half = self.spec.kernel // 2
        return F.pad(x, (half, half, half, half), mode="reflect") if half else x

    def drive(self, x: torch.Tensor) -> torch.Tensor:
        """u: [B, K, H, W] (conv) or [B, K] (dense), of the standardised input."""
        weight = rules.lebesgue(self.weight, self.p)
        if self.spec.type == "conv":
            return F.conv2d(self._pad(x), weight)
        return x.flatten(1) @ weight.T

    def activate(self, u: torch.Tensor) -> torch.Tensor:
        if self.spec.activation == "triangle":
            u = u - u.mean(dim=1, keepdim=True)
        return self.pool(powered_relu(u, self.spec.power))

    def _standardise(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x if self.spec.type == "conv" else x.flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activate(self.drive(self._standardise(x)))

    def patches(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
        """The inputs the units see, [N, D] (conv: every position of every image), and the shape
        u takes as a map."""
        if self.spec.type == "dense":
            return x.flatten(1), (len(x), self.units)
        padded = self._pad(x)
        unfolded = F.unfold(padded, self.spec.kernel)  # [B, D, L]
        height = padded.shape[2] - self.spec.kernel + 1
        width = padded.shape[3] - self.spec.kernel + 1
        return unfolded.transpose(1, 2).reshape(-1, unfolded.shape[1]), (len(x), height, width, self.units)

    @torch.no_grad()
    def plastic(self, x: torch.Tensor, rule) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(the layer's output, the rule's change to the weights [K, D] summed over the batch's
        inputs, each input's winning unit [N]). `rule(patches, W, u) -> change`."""
        z = self._standardise(x)
        inputs, map_shape = self.patches(z)
        weight = self.matrix()
        u = inputs @ rules.lebesgue(weight, self.p).T  # [N, K]
        change = rule(inputs, weight, u)
        drive = u if self.spec.type == "dense" else u.view(map_shape).permute(0, 3, 1, 2)
        return self.activate(drive), change, u.argmax(dim=1)


class HebbianEncoder(nn.Module):
    """The stack; features are the last layer's activity (a conv map average-pooled to `grid`),
    flattened."""

    def __init__(self, layers: list[HebbianLayer], grid: int | None, out_dim: int):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.grid = grid
        self.out_dim = out_dim

    def head(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4 and self.grid is not None:
            x = F.adaptive_avg_pool2d(x, self.grid)
        return x.flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return self.head(x)


def build_encoder(spec: HebbianSpec, input_shape: tuple[int, ...]) -> HebbianEncoder:
    p = spec.lebesgue_p if spec.rule == "krotov_hopfield" else 2.0
    scale = spec.init_scale if spec.init_scale is not None else (25.0 if spec.rule == "softhebb" else None)
    layers, shape = [], tuple(input_shape)
    for layer_spec in spec.layers:
        fan_in = (shape[0] * layer_spec.kernel ** 2) if layer_spec.type == "conv" else math.prod(shape)
        layer = HebbianLayer(layer_spec, shape, p, scale if scale is not None else math.sqrt(fan_in))
        layers.append(layer)
        with torch.no_grad():
            shape = tuple(layer.eval()(torch.zeros(2, *shape)).shape[1:])
    encoder = HebbianEncoder(layers, spec.feature_grid, 0)
    with torch.no_grad():
        encoder.out_dim = encoder.eval()(torch.zeros(2, *input_shape)).shape[1]
    return encoder.train()


class HebbianNetwork(Trainable):
    """Trains every layer by the spec's rule at once; a linear probe on validation after every
    epoch (and before the first) shows what the features are worth as they learn."""

    validation_metric = "val/probe_accuracy"

    def __init__(self, spec: HebbianSpec, train: TrainSpec, input_shape: tuple[int, ...], num_classes: int):
        spec.check_input(input_shape)
        super().__init__(build_encoder(spec, input_shape), train)
        self.spec = spec
        self.num_classes = num_classes
        self._probe: tuple[torch.Tensor, ...] | None = None

    def rule(self, layer: HebbianLayer):
        spec = self.spec
        if spec.rule == "softhebb":
            return lambda x, w, u: rules.softhebb(x, w, u, layer.spec.t_invert)
        return lambda x, w, u: rules.krotov_hopfield(x, w, u, spec.rank, spec.delta)

    @torch.no_grad()
    def hebbian_updates(self, inputs: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        """Each layer's step (the form of a gradient: the optimiser subtracts it) and what to log,
        from one batch: every layer learns from the previous one's output in the same pass."""
        updates, logged = {}, {}
        h = inputs
        for index, layer in enumerate(self.encoder.layers):
            h, change, winners = layer.plastic(h, self.rule(layer))
            step = rules.normalised(change)
            if self.spec.rule == "softhebb":
                step = step * rules.adaptive_rate(layer.matrix(), self.spec.adaptive_lr_power)
            updates[f"encoder.layers.{index}.weight"] = (-layer.spec.lr_scale * step).view_as(layer.weight)
            logged[f"train/layer{index}_weight_norm"] = layer.matrix().norm(dim=1).mean().item()
            logged[f"train/layer{index}_winning_units"] = winners.unique().numel() / layer.units
        return updates, logged

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        updates, logged = self.hebbian_updates(model_input(batch["input"]))
        for name, value in logged.items():
            self.log(name, value, on_step=False, on_epoch=True, batch_size=len(batch["input"]), sync_dist=True)
        return self.as_gradients(updates)

    # --- the probe after each epoch ---

    def phases(self, spec, splits) -> list[Phase]:
        count = min(self.spec.probe_examples, len(splits.train["input"]))
        if count and len(splits.val["input"]):
            self._probe = (splits.train["input"][:count], splits.train["label"][:count], splits.val["input"],
                           splits.val["label"])
        return super().phases(spec, splits)

    def probe_accuracy(self) -> float:
        """A logistic regression on the current features of the first `probe_examples` training
        examples, scored on the validation split."""
        train_x, train_y, val_x, val_y = self._probe
        device = self.device
        train = (extract_features(self.encoder, train_x, batch_size=256, device=device), train_y)
        val = (extract_features(self.encoder, val_x, batch_size=256, device=device), val_y)
        return linear_probe(train, val, val, self.num_classes, [PROBE_WEIGHT_DECAY], PROBE_ITERATIONS).accuracy

    def on_train_start(self) -> None:
        if self._probe is not None and self.global_step == 0 and self.logger is not None:
            self.logger.log_metrics({"val/probe_accuracy": self.probe_accuracy()}, step=0)  # the untrained network

    def on_train_epoch_end(self) -> None:
        if self._probe is not None:
            self.log("val/probe_accuracy", self.probe_accuracy(), prog_bar=True)

    def plot_groups(self) -> dict[str, tuple[str, list[str]]]:
        layers = range(len(self.encoder.layers))
        return {
            "training_curves": ("linear probe on validation (step 0: untrained)", ["val/probe_accuracy"]),
            "weight_norms": ("mean weight norm per unit", [f"train/layer{i}_weight_norm" for i in layers]),
            "winning_units": ("fraction of units that win at least one input of a batch",
                              [f"train/layer{i}_winning_units" for i in layers]),
        }
