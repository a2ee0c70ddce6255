"""The feed-forward network and its two learning rules (see the package docstring for the
equations). The predictive-coding functions take the network as its list of layers and are plain
functions of tensors, so the tests can drive them directly.

Locality. Every computation during inference and the weight update is one layer's: the layer's
input is a detached leaf, the layer is run on it, and torch.autograd differentiates that one
layer (its vector-Jacobian product with the error above it, or its weights' gradient given its
own error). No autograd graph spans two layers, and nothing runs backwards through the network.

Batches: each example relaxes on its own energy; the weight updates are averaged over the batch,
like backprop's gradients of the batch-mean loss. The energies reported are per example.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.data.datamodule import model_input
from pipeline.models.base import Supervised
from pipeline.models.predictive_coding import FeedforwardSpec
from pipeline.spec.components import TrainSpec

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "gelu": nn.GELU, "sigmoid": nn.Sigmoid}


class Layer(nn.Module):
    """One prediction f_l: `op` (Linear or Conv2d), then the activation (none on the output
    layer), then `pool` (the CNN's 2x2 average pool); `flatten` first for a Linear on images or
    feature maps."""

    def __init__(self, op: nn.Module, activation: nn.Module | None, pool: bool = False, flatten: bool = False):
        super().__init__()
        self.op = op
        self.activation = activation if activation is not None else nn.Identity()
        self.pool = nn.AvgPool2d(2) if pool else nn.Identity()
        self.flatten = flatten

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.flatten:
            x = x.flatten(1)
        return self.pool(self.activation(self.op(x)))


def build_layers(spec: FeedforwardSpec, input_shape: tuple[int, ...], num_classes: int) -> list[Layer]:
    activation = ACTIVATIONS[spec.activation]
    layers: list[Layer] = []
    if spec.architecture == "mlp":
        width = 1
        for size in input_shape:
            width *= size
        for index, hidden in enumerate(spec.widths):
            layers.append(Layer(nn.Linear(width, hidden), activation(), flatten=index == 0))
            width = hidden
        layers.append(Layer(nn.Linear(width, num_classes), None, flatten=len(layers) == 0))
        return layers
    channels, height, width = input_shape
    for out in spec.widths:
        layers.append(Layer(nn.Conv2d(channels, out, 3, padding=1), activation(), pool=True))
        channels, height, width = out, height // 2, width // 2
    layers.append(Layer(nn.Linear(channels * height * width, num_classes), None, flatten=True))
    return layers


class Encoder(nn.Module):
    """The hidden layers: features are the last hidden layer's activities, flattened."""

    def __init__(self, layers: list[Layer], out_dim: int):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x.flatten(1)


# --- predictive coding: plain functions of the layers and tensors ---


def output_error(logits: torch.Tensor, target: torch.Tensor, loss: str) -> torch.Tensor:
    """e_L = -d loss / d logits, per example (target one-hot)."""
    if loss == "squared":
        return target - logits
    return target - logits.softmax(dim=1)


def output_loss(logits: torch.Tensor, target: torch.Tensor, loss: str) -> torch.Tensor:
    """The output's energy term per example [B]: 1/2 ||logits - target||^2, or the cross-entropy."""
    if loss == "squared":
        return 0.5 * (logits - target).square().flatten(1).sum(dim=1)
    return -(target * logits.log_softmax(dim=1)).sum(dim=1)


def _local(layer: nn.Module, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(the layer's input as a fresh leaf that requires grad, the layer's prediction from it): the
    graph starts at this layer."""
    leaf = inputs.detach().requires_grad_(True)
    return leaf, layer(leaf)


def _input_vjp(prediction: torch.Tensor, leaf: torch.Tensor, error: torch.Tensor, keep: bool) -> torch.Tensor:
    """J^T e: the error above, through this one layer's Jacobian, to its input."""
    (product,) = torch.autograd.grad(prediction, leaf, grad_outputs=error, retain_graph=keep)
    return product


@dataclass
class Relaxation:
    values: list[torch.Tensor]
    """x_0..x_L after inference (x_0 the input; x_L, the output node: the prediction mu_L with the
    cross-entropy, the target with the squared loss)."""
    errors: list[torch.Tensor]
    """e_1..e_L after inference (e_L = -d loss / d mu_L)."""
    energies: list[float]
    """F per example (batch mean), at the start and after each of the T steps: T + 1 values."""
    forward_logits: torch.Tensor
    """mu_L of the forward pass (what backprop's loss is computed on)."""
    updates: list[dict[str, torch.Tensor]]
    """Per layer, {parameter name in the layer: dF/dW} (the batch mean), the form of a gradient."""
    halvings: int = 0
    """Standard predictive coding: steps rejected (an example's energy would have risen), over the
    batch; each halved that example's step size."""


def _energies(predictions: list[torch.Tensor], values: list[torch.Tensor], target: torch.Tensor, loss: str
              ) -> torch.Tensor:
    """F of each example [B]: sum_{l<L} 1/2 ||x_l - mu_l||^2 + loss(mu_L, target)."""
    total = output_loss(predictions[-1], target, loss)
    for prediction, value in zip(predictions[:-1], values[1:-1], strict=True):
        total = total + 0.5 * (value - prediction).square().flatten(1).sum(dim=1)
    return total


def _per_example(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return mask.view(-1, *([1] * (like.dim() - 1)))


def predictive_coding(layers: list[nn.Module], inputs: torch.Tensor, target: torch.Tensor, steps: int,
                      inference_lr: float, fixed_prediction: bool, loss: str = "cross_entropy",
                      track_energy: bool = True) -> Relaxation:
    """One predictive-coding pass on a batch: inputs [B, ...] clamped at x_0, target [B, classes]
    (one-hot) at the output, `steps` steps of inference over the hidden nodes, then each layer's
    weight update from its own error and input (see the module docstring on locality).

    Standard predictive coding (fixed_prediction False) is gradient descent on each example's F;
    a step that would raise an example's F (the step size above 2 / the curvature, which grows
    with the weights as training proceeds) is rejected and that example's step size halved, so F
    never rises. With fixed predictions the steps are taken as they are (they are not descent on
    F, and with inference_lr 1 they reproduce backprop exactly).
    `track_energy`: F after every step; else only at the start and the end (with fixed
    predictions the true F costs a forward pass of its own)."""
    depth = len(layers)
    with torch.no_grad():  # the forward pass initialises the value nodes
        forward = [inputs.detach()]
        for layer in layers:
            forward.append(layer(forward[-1]))
    values = [v.clone() for v in forward]
    energies: list[float] = []
    step_size = torch.full((len(inputs),), inference_lr, dtype=inputs.dtype, device=inputs.device)
    halvings = 0
    previous, kept = None, values  # standard PC: the last accepted energies and nodes
    local = [_local(layer, forward[index]) for index, layer in enumerate(layers)]
    for step in range(steps + 1):
        if step and not fixed_prediction:  # standard PC: predictions from the current nodes
            local = [_local(layer, values[index]) for index, layer in enumerate(layers)]
        predictions = [prediction.detach() for _, prediction in local]
        if not fixed_prediction:
            energy = _energies(predictions, values, target, loss)
            rose = energy > previous + 1e-5 * (1 + previous.abs()) if previous is not None else None
            if rose is not None and rose.any():  # back to where those examples were, half the step
                halvings += int(rose.sum())
                step_size = torch.where(rose, step_size / 2, step_size)
                values = [torch.where(_per_example(rose, new), old, new)
                          for old, new in zip(kept, values, strict=True)]
                local = [_local(layer, values[index]) for index, layer in enumerate(layers)]
                predictions = [prediction.detach() for _, prediction in local]
                energy = _energies(predictions, values, target, loss)
            energies.append(energy.mean().item())
            previous, kept = energy, values
        elif step == 0:
            energies.append(_energies(predictions, values, target, loss).mean().item())
        elif track_energy or step == steps:
            energies.append(_true_energy(layers, values, target, loss))
        errors = [values[i + 1] - predictions[i] for i in range(depth - 1)]
        errors.append(output_error(predictions[-1], target, loss))
        if step == steps:
            break
        with torch.no_grad():
            # Node x_l: its own error, and layer l+1's error through that layer's Jacobian alone.
            values = [values[0], *(values[i] + _per_example(step_size, values[i]) * (
                _input_vjp(local[i][1], local[i][0], errors[i], keep=fixed_prediction) - errors[i - 1])
                for i in range(1, depth)), values[-1]]
    # Each layer's update from its own error and its input (with fixed predictions, the input of
    # the forward pass, where the predictions and Jacobians were taken).
    updates = [_weight_update(layer, prediction, errors[index], len(inputs))
               for index, (layer, (_, prediction)) in enumerate(zip(layers, local, strict=True))]
    values[-1] = target.to(values[-1].dtype) if loss == "squared" else predictions[-1]
    return Relaxation(values, errors, energies, forward[-1], updates, halvings)


def _true_energy(layers: list[nn.Module], values: list[torch.Tensor], target: torch.Tensor, loss: str) -> float:
    """F with the predictions recomputed from the current nodes (what fixed_prediction holds still)."""
    with torch.no_grad():
        predictions = [layer(values[index]) for index, layer in enumerate(layers)]
    return _energies(predictions, values, target, loss).mean().item()


def _weight_update(layer: nn.Module, prediction: torch.Tensor, error: torch.Tensor, batch: int
                   ) -> dict[str, torch.Tensor]:
    """dF/dW_l = -(d f_l / d W_l)^T e_l, batch mean: this layer's prediction (whose graph starts at
    its own input) differentiated with respect to its own weights."""
    names, parameters = zip(*layer.named_parameters(), strict=True)
    grads = torch.autograd.grad(prediction, parameters, grad_outputs=-error / batch)
    return dict(zip(names, grads, strict=True))


# --- the module ---


class Feedforward(Supervised):
    """The classifier: `encoder` (the hidden layers) and `head` (the output layer), trained by
    backprop of `output_loss` or by predictive coding, whose updates reach the optimiser as
    gradients (`as_gradients`), so the spec's optimiser, schedule and checkpoints apply to both."""

    def __init__(self, spec: FeedforwardSpec, train: TrainSpec, input_shape: tuple[int, ...], num_classes: int):
        spec.check_input(input_shape)
        layers = build_layers(spec, input_shape, num_classes)
        with torch.no_grad():
            features = Encoder(layers[:-1], 0)(torch.zeros(1, *input_shape)).shape[1]
        super().__init__(Encoder(layers[:-1], features), train)
        self.head = layers[-1]
        self.spec = spec
        self.num_classes = num_classes
        self.input_shape = tuple(input_shape)

    @property
    def layers(self) -> list[nn.Module]:
        return [*self.encoder.layers, self.head]

    def layer_names(self) -> list[str]:
        """Each layer's prefix in named_parameters()."""
        return [f"encoder.layers.{i}." for i in range(len(self.encoder.layers))] + ["head."]

    def classify(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(inputs))

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The batch mean of `output_loss`: what backprop minimises."""
        if self.spec.output_loss == "cross_entropy":
            return F.cross_entropy(logits, labels)
        return output_loss(logits, F.one_hot(labels, self.num_classes).to(logits.dtype), "squared").mean()

    def relax(self, inputs: torch.Tensor, labels: torch.Tensor, track_energy: bool = False) -> Relaxation:
        """The spec's predictive-coding pass on a batch (energies at the start and end only, unless
        `track_energy`)."""
        spec = self.spec
        target = F.one_hot(labels, self.num_classes).to(inputs.dtype)
        return predictive_coding(self.layers, inputs, target, spec.inference_steps, spec.inference_lr,
                                 spec.fixed_prediction, spec.output_loss, track_energy)

    def pc_updates(self, relaxation: Relaxation) -> dict[str, torch.Tensor]:
        """The per-layer updates under the module's parameter names."""
        return {prefix + name: update for prefix, layer_updates in zip(self.layer_names(), relaxation.updates,
                                                                         strict=True)
                for name, update in layer_updates.items()}

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        inputs, labels = model_input(batch["input"]), batch["label"]
        size = len(labels)
        if self.spec.learning == "backprop":
            logits = self.classify(inputs)
            loss = to_minimise = self.loss(logits, labels)
        else:
            relaxation = self.relax(inputs, labels)
            logits = relaxation.forward_logits
            loss = self.loss(logits, labels)  # of the forward pass: backprop's loss, for comparison
            to_minimise = self.as_gradients(self.pc_updates(relaxation))  # each update lands in .grad
            for name, value in (("energy_start", relaxation.energies[0]), ("energy_end", relaxation.energies[-1]),
                                ("inference_halvings", relaxation.halvings / size)):
                self.log(f"train/{name}", value, on_epoch=True, on_step=False, batch_size=size, sync_dist=True)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=size, sync_dist=True)
        self.log("train/accuracy", (logits.argmax(dim=1) == labels).float().mean(), on_epoch=True, on_step=False,
                 batch_size=size, sync_dist=True)
        return to_minimise

    def plot_groups(self) -> dict[str, tuple[str, list[str]]]:
        groups = super().plot_groups()
        if self.spec.learning == "predictive_coding":
            groups["energy"] = ("predictive-coding energy per example, before and after inference",
                                ["train/energy_start", "train/energy_end"])
        return groups
