"""The continual learner: a network (lower layers, upper layers, a head over every class), a
scenario and a strategy, trained in one fit per experience. After each experience the network is
scored on every experience's test and validation examples: the rows of the accuracy matrices,
kept as buffers (saved with the weights) for the `continual` downstream task."""

from __future__ import annotations

import warnings

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.data.datamodule import Fields, Splits, TensorDataModule, model_input
from pipeline.models.base import Phase, Supervised
from pipeline.models.continual import ContinualSpec, dendrites, strategies
from pipeline.models.continual import metrics as cl_metrics
from pipeline.models.continual import scenario as cl_scenario
from pipeline.spec.components import DataSpec, TrainSpec


class LayerStack(nn.Module):
    """The network's feature layers as one list of modules, so that it can be cut at any index
    (`lower`, `upper`). `flatten`: the input is flattened first (an MLP)."""

    def __init__(self, layers: list[nn.Module], out_dim: int, flatten: bool):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.out_dim = out_dim
        self.flatten = flatten

    def run(self, x: torch.Tensor, start: int = 0, stop: int | None = None) -> torch.Tensor:
        if start == 0:
            x = x.flatten(1) if self.flatten else x
            if x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
        for layer in self.layers[start:stop]:
            x = layer(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run(x)


def mlp_layers(in_features: int, hidden: list[int]) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_features, width), nn.ReLU()]
        in_features = width
    return layers


def encoder_layers(encoder: nn.Module) -> list[nn.Module]:
    """An upstream encoder's modules in order (its `net` Sequential where it has one)."""
    net = getattr(encoder, "net", None)
    return list(net.children()) if isinstance(net, nn.Sequential) else [encoder]


class ExperienceData(TensorDataModule):
    """One phase's data, served as any spec's (`TensorDataModule`): what the strategy trains on,
    asked for when the fit starts (it may depend on what the phases before left, a buffer say),
    and the validation examples of the experiences it is checked on."""

    validates = True

    def __init__(self, net: Continual, index: int, checked_on: list[int], data: DataSpec, seed: int):
        super().__init__(data, seed * 1009 + index)
        self.net, self.index, self.checked_on = net, index, checked_on

    def setup(self, stage: str | None = None) -> None:
        self.net.phase = self.index
        val = cl_scenario.union([self.net.experiences[i] for i in self.checked_on], "val") if self.validates else {}
        self.splits = Splits(train=self.net.strategy.train_fields(self.index), val=val, test={}, classes=None)


class ExperienceTraining(ExperienceData):
    """A phase's data without validation examples (`validate_every_epoch: false`): with no
    `val_dataloader` of its own, Lightning runs no validation in the fit, nor its sanity check."""

    validates = False
    val_dataloader = pl.LightningDataModule.val_dataloader  # Lightning's own: "not overridden"


def _draw_as_a_loader_does() -> None:
    """What creating a DataLoader's iterator takes from the global random stream (its base seed)."""
    torch.empty((), dtype=torch.int64).random_()


class Continual(Supervised):
    """kind: continual. Built on an upstream encoder (`encoder`, its modules the network's layers)
    or on an MLP of `hidden` layers."""

    def __init__(self, spec: ContinualSpec, train: TrainSpec, input_shape: tuple[int, ...], num_classes: int,
                 encoder: nn.Module | None = None):
        context = None
        if encoder is not None:
            if spec.dendrites is not None:
                raise ValueError("dendrites build their own MLP: a continual learner with dendrites takes no "
                                 "upstream encoder")
            layers = LayerStack(encoder_layers(encoder), encoder.out_dim, flatten=False)
        elif spec.dendrites is not None:
            context = dendrites.Context(standardise=bool(spec.dendrites.standardise_context))
            size = int(np.prod(input_shape))
            layers = LayerStack(dendrites.dendritic_layers(size, spec.hidden, spec.dendrites.segments,
                                                           spec.dendrites.percent_on, context),
                                spec.hidden[-1], flatten=True)
        else:
            layers = LayerStack(mlp_layers(int(np.prod(input_shape)), spec.hidden), spec.hidden[-1], flatten=True)
        super().__init__(layers, train)
        self.context = context
        if context is not None:  # each experience's prototype (mean training input), once it has been trained on
            size = int(np.prod(input_shape))
            self.register_buffer("prototypes", torch.zeros(spec.scenario.experiences, size))
            self.register_buffer("prototype_known", torch.zeros(spec.scenario.experiences, dtype=torch.bool))
        self.spec = spec
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes
        if spec.latent_layer is not None and spec.latent_layer > len(layers.layers):
            raise ValueError(f"latent_layer {spec.latent_layer} is past the network's {len(layers.layers)} modules")
        self.head = nn.Linear(layers.out_dim, num_classes)
        count = spec.scenario.experiences
        for split in ("test", "val"):
            self.register_buffer(f"accuracy_{split}", torch.full((count, count), float("nan")))
            self.register_buffer(f"initial_{split}", torch.full((count,), float("nan")))
        self.register_buffer("rows", torch.zeros((), dtype=torch.int64))
        # What the strategy kept after the last phase done (samples, bytes): measured when it was done.
        self.register_buffer("memory_kept", torch.zeros(2, dtype=torch.float64))
        self.register_buffer("class_order", torch.full((num_classes,), -1, dtype=torch.int64))
        self.register_buffer("task_classes", torch.zeros(count, num_classes, dtype=torch.bool))
        self.experiences: list[cl_scenario.Experience] = []
        self._epoch_loss: dict = {"sum": torch.zeros(()), "count": 0, "last": None}  # see training_step
        self.phase = 0
        self.seed = 0
        self.lower_frozen = False
        self.set_lower_frozen(spec.freeze_lower)
        self.strategy = strategies.build(spec.strategy, self)

    # --- the network ---

    @property
    def domain_incremental(self) -> bool:
        return self.spec.scenario.type == "domain_incremental"

    @property
    def cut(self) -> int:
        return self.spec.latent_layer if self.spec.latent_layer is not None else 0

    def lower(self, x: torch.Tensor) -> torch.Tensor:
        """Activations at the latent layer (the input as the layers read it where the cut is 0)."""
        return self.encoder.run(model_input(x), 0, self.cut)

    def upper(self, latents: torch.Tensor) -> torch.Tensor:
        """Features from latent-layer activations."""
        return self.encoder.run(latents, self.cut)

    def set_lower_frozen(self, frozen: bool) -> None:
        """Freeze (or free) the modules below the latent layer; frozen ones stay in eval mode."""
        self.lower_frozen = frozen
        for layer in self.encoder.layers[: self.cut]:
            for parameter in layer.parameters():
                parameter.requires_grad_(not frozen)
        self.train(self.training)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.lower_frozen:
            for layer in self.encoder.layers[: self.cut]:
                layer.eval()
        return self

    def mask(self, logits: torch.Tensor, task: torch.Tensor | None) -> torch.Tensor:
        """Task-incremental: each example's logits outside its experience's classes masked out."""
        if task is None or self.spec.scenario.type != "task_incremental":
            return logits
        return logits.masked_fill(~self.task_classes[task], float("-inf"))

    def experience_of(self, labels: torch.Tensor) -> torch.Tensor:
        """Each label's experience: the first one its class belongs to (the only one outside a
        domain-incremental stream, where every class is in every experience)."""
        return self.task_classes.long().argmax(dim=0).to(labels.device)[labels]

    def logits(self, inputs: torch.Tensor, task: torch.Tensor | None = None) -> torch.Tensor:
        inputs = model_input(inputs)
        if self.context is not None:
            self.context.set(*self.context_of(inputs, task))
        return self.mask(self.head(self.encoder(inputs)), task)

    def context_of(self, inputs: torch.Tensor, task: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Active dendrites' context, as prototypes and each example's index into them: while
        training, the prototype of each example's experience (known to the learner as it trains on
        it); else the nearest prototype of an experience trained on, inferred from the input (no
        task identity is given at test time)."""
        if self.training:
            if task is not None:
                return self.prototypes, task
            return self.prototypes[self.phase:self.phase + 1], torch.zeros(len(inputs), dtype=torch.long,
                                                                           device=inputs.device)
        return dendrites.nearest_prototype(inputs.flatten(1), self.prototypes, self.prototype_known)

    def learn_prototype(self, index: int) -> None:
        """The experience's prototype, the mean of its training inputs, known from its fit on."""
        inputs = self.experiences[index].split("train")["input"]
        total = torch.zeros(self.prototypes.shape[1], dtype=torch.float64)
        for start in range(0, len(inputs), 4096):
            total += model_input(inputs[start:start + 4096]).flatten(1).double().sum(dim=0)
        self.prototypes[index] = (total / max(1, len(inputs))).to(self.prototypes)
        self.prototype_known[index] = True

    def forward(self, inputs: torch.Tensor, task: torch.Tensor | None = None) -> torch.Tensor:
        return self.logits(inputs, task)

    def logits_from_latents(self, latents: torch.Tensor, task: torch.Tensor | None = None) -> torch.Tensor:
        return self.mask(self.head(self.upper(latents)), task)

    def cross_entropy(self, logits: torch.Tensor, batch: Fields) -> torch.Tensor:
        return F.cross_entropy(logits, batch["label"])

    def classify(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.strategy.scores(inputs, None)

    # --- the protocol ---

    def build_stream(self, splits, seed: int) -> None:
        """The scenario's experiences over `splits` (the training builds them, and the evaluation
        again, from the same data and seed)."""
        self.seed = seed
        self.experiences = cl_scenario.build(self.spec.scenario, splits, seed)
        order = [c for e in self.experiences for c in e.classes if self.spec.scenario.type != "domain_incremental"]
        if order:
            self.class_order.copy_(torch.tensor(order))
        for experience in self.experiences:
            self.task_classes[experience.index, list(experience.classes)] = True

    def phases(self, spec, splits) -> list[Phase]:
        self.build_stream(splits, spec.seed)
        # b_j: the untrained network's accuracy on each experience (forward transfer's reference).
        for split in ("test", "val"):
            getattr(self, f"initial_{split}").copy_(torch.tensor(self.accuracies(split)))
        data = ExperienceData if self.validates else ExperienceTraining
        if not self.validates:  # asked for: Lightning's note that the fits will not validate says nothing
            warnings.filterwarnings("ignore", message="You defined a `validation_step` but have no `val_dataloader`")
        return [Phase(name, data(self, index, checked_on, spec.data, spec.seed), spec.train.max_epochs)
                for index, (name, checked_on) in enumerate(self.strategy.phases())]

    @property
    def validates(self) -> bool:
        """Whether each fit validates at its epochs' ends (`validate_every_epoch`; null: yes)."""
        return self.spec.validate_every_epoch is not False

    @torch.no_grad()
    def accuracies(self, split: str) -> list[float]:
        """The network's accuracy on each experience's examples of `split` (with its task identity)."""
        was_training = self.training
        self.eval()
        device = self.head.weight.device
        out = []
        for experience in self.experiences:
            fields = experience.split(split)
            if not len(fields["label"]):
                out.append(float("nan"))
                continue
            correct = 0
            for start in range(0, len(fields["label"]), 1024):
                inputs = fields["input"][start:start + 1024].to(device)
                task = fields["task"][start:start + 1024].to(device)
                predicted = self.strategy.scores(inputs, task).argmax(dim=1).cpu()
                correct += (predicted == fields["label"][start:start + 1024]).sum().item()
            out.append(correct / len(fields["label"]))
        self.train(was_training)
        return out

    def on_fit_start(self) -> None:
        self.fit_device = self.device
        if self.context is not None:  # the experiences this fit trains on
            for index in self.strategy.phases()[self.phase][1]:
                if not bool(self.prototype_known[index]):
                    self.learn_prototype(index)

    # Without validation, the fit still takes from the global random stream what a validating one
    # takes: a DataLoader's iterator draws its base seed from it, once for each epoch's validation
    # (Lightning's sanity check gives back what it took). So whatever draws from it later (replay's
    # batches from the buffer) draws the same numbers, and the weights and accuracy matrices are
    # those of the validating fit; tests/models/test_continual.py checks it.

    def on_train_epoch_end(self) -> None:
        epoch = self._epoch_loss
        if epoch["count"]:
            self.log("train/loss_epoch", epoch["sum"] / epoch["count"], on_step=False, on_epoch=True, prog_bar=True,
                     batch_size=1)
        if not self.validates and self._would_validate():
            _draw_as_a_loader_does()

    def _would_validate(self) -> bool:
        """Whether the current phase has validation examples (a validating fit would run on them)."""
        _, checked_on = self.strategy.phases()[self.phase]
        return any(len(self.experiences[i].val["label"]) for i in checked_on)

    def after_phase(self, index: int, phase: Phase) -> dict[str, float]:
        # Lightning leaves the module on the CPU after a fit: consolidate and score where it trained.
        self.to(getattr(self, "fit_device", self.device))
        self.strategy.end_experience(index)
        measured = {}
        for split in ("test", "val"):
            row = self.accuracies(split)
            getattr(self, f"accuracy_{split}")[index] = torch.tensor(row)
            suffix = "" if split == "test" else "_val"
            measured.update({f"continual/accuracy_experience_{j}{suffix}": a for j, a in enumerate(row)})
            seen = self.seen(index)
            measured[f"continual/average_accuracy_seen{suffix}"] = float(np.mean([row[j] for j in seen]))
        self.rows.fill_(index + 1)
        memory = self.strategy.memory()
        self.memory_kept.copy_(torch.tensor([memory["memory_samples"], memory["memory_bytes"]], dtype=torch.float64))
        measured.update({f"continual/{k}": v for k, v in memory.items()})
        if index + 1 < len(self.strategy.phases()):
            self.strategy.next_experience(index + 1)
        return measured

    def seen(self, index: int) -> list[int]:
        """The experiences trained on once phase `index` is done."""
        phases = self.strategy.phases()
        return sorted({j for name, checked in phases[: index + 1] for j in checked})

    def matrix(self, split: str = "test") -> np.ndarray:
        """The accuracy matrix so far: a row per phase done."""
        return getattr(self, f"accuracy_{split}")[: int(self.rows)].cpu().numpy()

    def memory(self) -> dict[str, float]:
        """What the strategy kept after the last phase done: `memory_samples`, `memory_bytes`."""
        samples, size = self.memory_kept.tolist()
        return {"memory_samples": samples, "memory_bytes": size}

    def summary(self, split: str = "test") -> dict[str, float]:
        return cl_metrics.summary(self.matrix(split), getattr(self, f"initial_{split}").cpu().numpy())

    # --- Lightning ---

    # The loss is logged as `self.log("train/loss", on_step=True, on_epoch=True)` would log it (the
    # same `train/loss_step` points, the same `train/loss_epoch` values), without calling it at every
    # step (a Lightning `log` call costs about half a millisecond, a tenth of a step of the MLP):
    # each step adds its loss to the epoch's sum; the step's value is logged only on the steps
    # Lightning sends to the loggers (every `log_every_n_steps`), the epoch's mean at its end.
    # (A plain dict: setting a module's attribute at every step costs more than it should.)

    def on_train_epoch_start(self) -> None:
        self._epoch_loss = {"sum": torch.zeros((), device=self.device), "count": 0, "last": None}

    def training_step(self, batch: Fields, batch_idx: int) -> torch.Tensor:
        loss = self.strategy.loss(batch)
        size, epoch = len(batch["label"]), self._epoch_loss
        epoch["last"] = loss.detach()
        epoch["sum"] = epoch["sum"] + epoch["last"] * size  # as Lightning's mean-reduced epoch value
        epoch["count"] += size
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        self.strategy.after_step()
        trainer = self.trainer
        every = trainer.log_every_n_steps
        # The steps whose metrics Lightning sends to the loggers (the optimiser has stepped by now).
        if every and (trainer.global_step % every == 0 or trainer.should_stop):
            self.log("train/loss_step", self._epoch_loss["last"], on_step=True, on_epoch=False, prog_bar=True,
                     batch_size=len(batch["label"]))

    def validation_step(self, batch: Fields, batch_idx: int) -> None:
        predicted = self.strategy.scores(batch["input"], batch["task"]).argmax(dim=1)
        self.log("val/accuracy", (predicted == batch["label"]).float().mean(), on_epoch=True, prog_bar=True,
                 batch_size=len(batch["label"]))

    def plot_groups(self) -> dict[str, tuple[str, list[str]]]:
        return {"training_curves": ("training (steps continue across experiences)",
                                    ["train/loss_epoch"] + (["val/accuracy"] if self.validates else []))}
