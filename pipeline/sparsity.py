"""Dynamic sparse training for any network the training stage fits (`train.sparsity`): static
random masks, SET (Mocanu et al. 2018) and RigL (Evci et al. 2020), as a Lightning callback.

Every Linear and Conv weight of the model gets a {0, 1} mask at the first step (each layer's
density uniform or Erdős-Rényi-kernel), and the weight is kept multiplied by it: masked entries get
no gradient and are re-zeroed after every optimizer step. Every `update_interval` steps until
`end_fraction` of the training, SET and RigL drop the `drop_fraction(t)` of each layer's active
weights that are smallest in magnitude and grow as many among the inactive ones: SET at random,
RigL where the batch's dense gradient is largest. Grown weights start at zero, with their
optimizer state (momentum, Adam's moments) zeroed. A layer's count of active weights never
changes.

Training FLOPs are counted as RigL's paper counts them, from the multiply-accumulates each sparse
layer does in the training steps' forward passes: a sparse step costs 3 x its sparse forward
(forward, gradient of the input, gradient of the weights), a RigL update step 2 x the sparse
forward plus the dense forward (the weights' gradient is dense); the dense network's steps cost 3 x
the dense forward. Layers other than Linear and Conv (norms, pooling, activations) are not counted
on either side. The masks, the counts and the update steps are in the callback's checkpoint state,
so a resumed training continues with the same topology."""

from __future__ import annotations

import math

import pytorch_lightning as pl
import torch
from torch import nn

from pipeline.spec.components import SparsitySpec

LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def sparse_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Parameter name of the weight -> its Linear or Conv module, in module order."""
    names = {id(parameter): name for name, parameter in model.named_parameters()}
    return {names[id(module.weight)]: module for module in model.modules()
            if isinstance(module, LAYERS) and id(module.weight) in names and module.weight.requires_grad}


def layer_densities(shapes: dict[str, tuple[int, ...]], density: float, distribution: str,
                    dense_first_layer: bool = False) -> dict[str, float]:
    """Each layer's density. uniform: `density` for every layer (but a dense first layer); erk:
    the total count of active weights is `density` x all of them, d_l = eps (sum of the
    dimensions) / (their product), eps solved for the total; a layer that would exceed 1 is dense
    (the first one too with `dense_first_layer`), and eps is solved again over the others."""
    first = next(iter(shapes), None) if dense_first_layer else None
    if distribution == "uniform" or density >= 1:
        return {name: 1.0 if name == first else density for name in shapes}
    sizes = {name: math.prod(shape) for name, shape in shapes.items()}
    raw = {name: sum(shape) / sizes[name] for name, shape in shapes.items()}
    dense: set[str] = {first} if first is not None else set()
    while True:
        budget = density * sum(sizes.values()) - sum(sizes[name] for name in dense)
        if budget <= 0:
            raise ValueError(f"train.sparsity: a density of {density} leaves nothing for the layers after the dense "
                             "first one; raise the density or set dense_first_layer: false")
        eps = budget / sum(raw[name] * sizes[name] for name in shapes if name not in dense)
        over = {name for name in shapes if name not in dense and eps * raw[name] > 1}
        if not over:
            return {name: 1.0 if name in dense else eps * raw[name] for name in shapes}
        dense |= over


def random_mask(shape: tuple[int, ...], density: float, generator: torch.Generator) -> torch.Tensor:
    """A boolean mask with exactly round(density x size) (at least 1) entries set, at random."""
    size = math.prod(shape)
    keep = min(size, max(1, round(density * size)))
    mask = torch.zeros(size, dtype=torch.bool)
    mask[torch.randperm(size, generator=generator)[:keep]] = True
    return mask.view(shape)


def drop_and_grow(weight: torch.Tensor, mask: torch.Tensor, fraction: float, grow_scores: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(the new mask, the flat indices dropped, those grown): floor(fraction x active) of the
    active weights smallest in magnitude are dropped, and as many inactive ones (just dropped
    included) with the largest `grow_scores` grown; the count of active weights is unchanged."""
    flat = mask.flatten()
    count = int(fraction * int(flat.sum()))
    empty = torch.zeros(0, dtype=torch.long, device=mask.device)
    if count == 0:
        return mask, empty, empty
    magnitude = torch.where(flat, weight.detach().abs().flatten(), torch.full_like(flat, math.inf, dtype=weight.dtype))
    dropped = magnitude.topk(count, largest=False).indices
    new = flat.clone()
    new[dropped] = False
    candidates = torch.where(new, torch.full_like(grow_scores.flatten(), -math.inf), grow_scores.flatten())
    grown = candidates.topk(count).indices
    new[grown] = True
    return new.view_as(mask), dropped, grown


def drop_fraction_at(spec: SparsitySpec, step: int, end: int) -> float:
    if step >= end:
        return 0.0
    if spec.schedule == "constant":
        return spec.drop_fraction
    return spec.drop_fraction / 2 * (1 + math.cos(math.pi * step / end))


class DynamicSparsity(pl.Callback):
    """Keeps the model's Linear and Conv weights sparse (see the module docstring)."""

    def __init__(self, spec: SparsitySpec, seed: int):
        self.spec = spec
        self.seed = seed
        self.masks: dict[str, torch.Tensor] = {}
        self.flops = 0.0
        self.dense_flops = 0.0
        self.updates = 0
        self._layers: dict[str, nn.Module] = {}
        self._forward = [0.0, 0.0]  # this step's multiply-accumulates: at the masks' density, dense
        self._hooks: list = []
        self._end = 0

    @property
    def state_key(self) -> str:
        return "DynamicSparsity"

    def state_dict(self) -> dict:
        return {"masks": {name: mask.cpu() for name, mask in self.masks.items()}, "flops": self.flops,
                "dense_flops": self.dense_flops, "updates": self.updates}

    def load_state_dict(self, state_dict: dict) -> None:
        self.masks = dict(state_dict["masks"])
        self.flops, self.dense_flops = state_dict["flops"], state_dict["dense_flops"]
        self.updates = state_dict["updates"]

    # --- the masks ---

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._layers = sparse_layers(pl_module)
        if not self._layers:
            raise ValueError("train.sparsity: the model has no Linear or Conv layer to make sparse")
        inherited = getattr(pl_module, "_sparsity_masks", None)  # an earlier phase's, in this process
        if not self.masks and inherited:
            self.masks = dict(inherited)
        if not self.masks:
            shapes = {name: tuple(layer.weight.shape) for name, layer in self._layers.items()}
            densities = layer_densities(shapes, self.spec.density, self.spec.distribution, self.spec.dense_first_layer)
            generator = torch.Generator().manual_seed(self.seed)
            self.masks = {name: random_mask(shapes[name], densities[name], generator) for name in shapes}
        device = pl_module.device
        self.masks = {name: mask.to(device) for name, mask in self.masks.items()}
        pl_module._sparsity_masks = self.masks
        self.apply_masks()
        self._end = int(self.spec.end_fraction * trainer.estimated_stepping_batches)
        self._hooks = [layer.register_forward_hook(self._count(name)) for name, layer in self._layers.items()]

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks = []
        if trainer.logger is not None and trainer.is_global_zero:
            trainer.logger.log_metrics(self.measured(), step=trainer.global_step)

    @torch.no_grad()
    def apply_masks(self) -> None:
        for name, layer in self._layers.items():
            layer.weight.mul_(self.masks[name])

    def density(self) -> float:
        return sum(int(m.sum()) for m in self.masks.values()) / sum(m.numel() for m in self.masks.values())

    def measured(self) -> dict[str, float]:
        return {"sparsity/density": self.density(), "sparsity/train_flops": self.flops,
                "sparsity/dense_train_flops": self.dense_flops,
                "sparsity/train_flops_vs_dense": self.flops / self.dense_flops if self.dense_flops else 0.0,
                "sparsity/updates": float(self.updates)}

    # --- counting ---

    def _count(self, name: str):
        def hook(module: nn.Module, inputs, output) -> None:
            if not (module.training and torch.is_grad_enabled()):
                return
            dense = output.numel() * module.weight[0].numel()  # each output element: one fan-in of MACs
            mask = self.masks[name]
            self._forward[0] += dense * (int(mask.sum()) / mask.numel())
            self._forward[1] += dense
        return hook

    # --- the updates ---

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer) -> None:
        step = trainer.global_step
        updating = (self.spec.method != "static" and step > 0 and step % self.spec.update_interval == 0
                    and step < self._end)
        sparse, dense = self._forward
        if updating and self.spec.method == "rigl":  # the weights' gradient is dense on this step
            self.flops += 2 * (2 * sparse + dense)
        else:
            self.flops += 2 * 3 * sparse
        self.dense_flops += 2 * 3 * dense
        self._forward = [0.0, 0.0]
        if updating:
            self.update(optimizer, drop_fraction_at(self.spec, step, self._end), step)
        for name, layer in self._layers.items():
            if layer.weight.grad is not None:
                layer.weight.grad.mul_(self.masks[name])

    @torch.no_grad()
    def update(self, optimizer, fraction: float, step: int) -> None:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + step)  # SET's draws: resumable
        for name, layer in self._layers.items():
            weight = layer.weight
            if self.spec.method == "rigl":
                if weight.grad is None:
                    continue
                scores = weight.grad.abs()
            else:
                scores = torch.rand(weight.shape, generator=generator).to(weight.device)
            mask, _, grown = drop_and_grow(weight, self.masks[name], fraction, scores)
            self.masks[name].copy_(mask)
            weight.view(-1)[grown] = 0.0
            state = optimizer.state.get(weight, {})
            for key in ("exp_avg", "exp_avg_sq", "momentum_buffer", "max_exp_avg_sq"):
                if isinstance(state.get(key), torch.Tensor) and state[key].shape == weight.shape:
                    state[key].view(-1)[grown] = 0.0
        self.updates += 1
        self.apply_masks()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch,
                           batch_idx: int) -> None:
        self.apply_masks()  # an optimizer's momentum may have moved a masked weight

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.logger is not None and trainer.is_global_zero:
            trainer.logger.log_metrics(self.measured(), step=trainer.global_step)
