"""The `nengo` kind as a Lightning module: each training batch runs the learning network in
Nengo's simulator for as long as its inputs last (a series' windows one after another, or each
image for `present_seconds`); validation runs a copy built from what it has learnt, with
learning off. What it learns is copied into buffers after every batch, so the weight file holds
it; checkpoints hold the simulator's whole state too (membrane voltages, synapses, the step), so a
killed run resumes where the simulation was."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.data.datamodule import model_input
from pipeline.models.base import Phase, Trainable
from pipeline.models.nengo import NengoSpec
from pipeline.models.nengo.network import TWINS, Arrays, Simulation, Tuning, draw_tuning, least_squares, readout_names
from pipeline.spec.components import TrainSpec

TAU_RC, TAU_REF = 0.02, 0.002
"""Nengo's LIF defaults, which the torch rates below share."""


class NefEncoder(nn.Module):
    """The network's parameters as buffers, and its first (spiking) ensemble's steady-state firing
    rates as features (a window's mean over its steps): what a probe of the NEF representation
    reads."""

    def __init__(self, spec: NengoSpec, dimensions: int, outputs: int, pixels: int | None, channel: bool):
        super().__init__()
        n, twins = spec.neurons, len(TWINS)
        learned_rows = n if channel and {"bcm", "oja"} & set(spec.rules) else outputs
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))
        self.register_buffer("scaled_encoders", torch.zeros(twins, n, dimensions, dtype=torch.float64))
        self.register_buffer("gain", torch.ones(n, dtype=torch.float64))
        self.register_buffer("bias", torch.zeros(n, dtype=torch.float64))
        self.register_buffer("learned", torch.zeros(twins, learned_rows, n, dtype=torch.float64))
        self.register_buffer("least_squares", torch.zeros(twins, outputs, n, dtype=torch.float64))
        if channel:
            self.register_buffer("post_scaled_encoders", torch.zeros(n, dimensions, dtype=torch.float64))
            self.register_buffer("post_gain", torch.ones(n, dtype=torch.float64))
            self.register_buffer("post_bias", torch.zeros(n, dtype=torch.float64))
            self.register_buffer("post_decoders", torch.zeros(dimensions, n, dtype=torch.float64))
        if pixels is not None:
            self.register_buffer("pca_mean", torch.zeros(pixels))
            self.register_buffer("pca_components", torch.zeros(dimensions, pixels))
            self.register_buffer("pca_scale", torch.ones(()))
        self.channel = channel
        self.out_dim = n

    def project(self, inputs: torch.Tensor) -> torch.Tensor:
        """What the first ensemble reads: a series' values [B, d, L] as they are; images [B, ...]
        centred, on the principal components, scaled so that 95% of training images lie in the
        unit ball, [B, d]."""
        if self.channel:
            return inputs
        flat = inputs.flatten(1).float()
        return (flat - self.pca_mean) @ self.pca_components.T / self.pca_scale

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """[B, neurons]: the rates for each image, or each window's mean rate over its steps."""
        x = self.project(inputs)
        if self.channel:
            return self.rates(x.transpose(1, 2)).mean(dim=1)  # [B, L, n] averaged over the steps
        return self.rates(x)

    def rates(self, x: torch.Tensor) -> torch.Tensor:
        current = x.double() @ self.scaled_encoders[0].T + self.bias
        safe = torch.where(current > 1, current, torch.full_like(current, 2.0))
        rates = torch.where(current > 1, 1.0 / (TAU_REF + TAU_RC * torch.log1p(1.0 / (safe - 1))),
                            torch.zeros_like(current))
        return rates.float()

    def arrays(self) -> Arrays:
        def np_(tensor: torch.Tensor) -> np.ndarray:
            return tensor.detach().cpu().double().numpy().copy()

        if not self.channel:
            return Arrays(np_(self.scaled_encoders), np_(self.gain), np_(self.bias), np_(self.learned),
                          np_(self.least_squares))
        post = Tuning(np_(self.post_scaled_encoders), np_(self.post_gain), np_(self.post_bias))
        return Arrays(np_(self.scaled_encoders), np_(self.gain), np_(self.bias), np_(self.learned),
                      np_(self.least_squares), post, np_(self.post_decoders))


class NengoNetwork(Trainable):
    """See `pipeline.models.nengo`. The headline readout is the spiking twin's PES-learned one."""

    drop_last = False

    def __init__(self, spec: NengoSpec, train: TrainSpec, input_shape: tuple[int, ...], num_classes: int):
        spec.check_input(input_shape)
        channel = len(input_shape) == 2
        dimensions = input_shape[0] if channel else spec.pca_components
        outputs = dimensions if channel else num_classes
        if not channel and not num_classes:
            raise ValueError("the nengo classifier needs labelled images")
        pixels = None if channel else math.prod(input_shape)
        super().__init__(NefEncoder(spec, dimensions, outputs, pixels, channel), train)
        self.spec, self.channel, self.num_classes = spec, channel, num_classes
        # The initial membrane voltages are drawn from the seed: kept with the weights, so that the
        # evaluation simulates the network the training did.
        self.register_buffer("seed", torch.zeros((), dtype=torch.int64))
        # What the inert optimiser holds (see configure_optimizers).
        self.clock = nn.Parameter(torch.zeros(1), requires_grad=False)
        self.automatic_optimization = False  # the rules learn inside the simulator
        self._simulation: Simulation | None = None
        self._validation: Simulation | None = None
        self._pending: list[np.ndarray] | None = None
        self._sums: dict[str, float] = {}

    @property
    def validation_metric(self) -> str:
        return "val/rmse" if self.channel else "val/accuracy"

    # --- building the network from the training data ---

    def phases(self, spec, splits) -> list[Phase]:
        self.seed.fill_(spec.seed)
        if not bool(self.encoder.initialised):
            self.initialise(splits.train)
        return super().phases(spec, splits)

    @torch.no_grad()
    def initialise(self, train: dict) -> None:
        """Tuning curves drawn (seeded), the image projection and the least-squares readouts
        fitted, all on the training split; the learned connections start at zero."""
        spec, encoder = self.spec, self.encoder
        rng = np.random.RandomState(int(self.seed))
        inputs = model_input(train["input"])
        if not self.channel:
            self._fit_projection(inputs)
        points = encoder.project(inputs)
        points = (points.transpose(1, 2).reshape(-1, points.shape[1]) if self.channel else points).double().numpy()
        chosen = rng.choice(len(points), min(spec.eval_points, len(points)), replace=False)
        if self.channel:
            targets = points[chosen]
        else:
            targets = F.one_hot(train["label"][chosen], self.num_classes).double().numpy()
        tuning = draw_tuning(spec, points.shape[1], rng, data=points)
        decoders = least_squares(tuning, points[chosen], targets, spec.solver_reg)
        encoder.scaled_encoders.copy_(torch.from_numpy(np.stack([tuning.scaled_encoders] * len(TWINS))))
        encoder.gain.copy_(torch.from_numpy(tuning.gain))
        encoder.bias.copy_(torch.from_numpy(tuning.bias))
        encoder.least_squares.copy_(torch.from_numpy(np.stack([decoders] * len(TWINS))))
        encoder.learned.zero_()
        if self.channel:  # the output ensemble: random tuning, decoded by least squares
            post = draw_tuning(spec.model_copy(update={"encoders": "hypersphere"}), points.shape[1], rng)
            encoder.post_scaled_encoders.copy_(torch.from_numpy(post.scaled_encoders))
            encoder.post_gain.copy_(torch.from_numpy(post.gain))
            encoder.post_bias.copy_(torch.from_numpy(post.bias))
            encoder.post_decoders.copy_(torch.from_numpy(least_squares(post, targets, targets, spec.solver_reg)))
        encoder.initialised.fill_(True)

    def _fit_projection(self, inputs: torch.Tensor) -> None:
        flat = inputs.flatten(1).double()
        mean = flat.mean(dim=0)
        centred = flat - mean
        _, vectors = torch.linalg.eigh(centred.T @ centred)
        components = vectors[:, -self.spec.pca_components:].flip(1).T  # [d, pixels], largest first
        signs = torch.sign(components.gather(1, components.abs().argmax(dim=1, keepdim=True)))
        components = components * signs  # each component's largest entry positive: one answer per data
        norms = (centred @ components.T).norm(dim=1)
        self.encoder.pca_mean.copy_(mean.float())
        self.encoder.pca_components.copy_(components.float())
        self.encoder.pca_scale.fill_(float(torch.quantile(norms.float(), 0.95)))

    # --- what the simulator is fed ---

    def stream(self, batch: dict[str, torch.Tensor]) -> tuple[np.ndarray, np.ndarray | None, int]:
        """(inputs [steps, d], targets [steps, k], steps per item): a series' windows one after
        another (the target is the input itself), or each image held for `present_seconds` with
        its one-hot label (None without labels)."""
        x = self.encoder.project(model_input(batch["input"]).cpu())
        if self.channel:
            steps = x.shape[2]
            flat = x.transpose(1, 2).reshape(-1, x.shape[1]).double().numpy()
            return flat, flat, steps
        steps = self.presentation_steps
        inputs = x.double().numpy().repeat(steps, axis=0)
        if "label" not in batch:
            return inputs, None, steps
        targets = F.one_hot(batch["label"].cpu(), self.num_classes).double().numpy().repeat(steps, axis=0)
        return inputs, targets, steps

    @property
    def presentation_steps(self) -> int:
        return max(2, round(self.spec.present_seconds / self.spec.dt))

    def score(self, outputs: dict[str, np.ndarray], targets: np.ndarray, steps: int,
              labels: torch.Tensor | None) -> dict[str, tuple[float, int]]:
        """Per readout, (sum, count) of what it is scored on: squared errors against the input
        (channel) or correct decisions (images: the mean readout over each presentation's second
        half, argmax)."""
        sums = {}
        for name, output in outputs.items():
            if self.channel:
                sums[name] = (float(((output - targets) ** 2).sum()), output.size)
            else:
                decisions = self.decisions(output, steps)
                sums[name] = (float((decisions == labels.cpu().numpy()).sum()), len(decisions))
        return sums

    @staticmethod
    def add(sums: dict[str, tuple[float, int]], scored: dict[str, tuple[float, int]]) -> None:
        """Adds a batch's (sum, count) per readout into running ones."""
        for name, (total, count) in scored.items():
            previous = sums.get(name, (0.0, 0))
            sums[name] = (previous[0] + total, previous[1] + count)

    def figure(self, total: float, count: int) -> float:
        """A readout's score from its sums: RMSE (channel) or accuracy."""
        return math.sqrt(total / count) if self.channel else total / count

    @staticmethod
    def decisions(output: np.ndarray, steps: int) -> np.ndarray:
        per_item = output.reshape(-1, steps, output.shape[1])
        return per_item[:, steps // 2:].mean(axis=1).argmax(axis=1)

    # --- training ---

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """No gradient is ever computed: this inert optimiser (learning rate 0, over a parameter
        that never changes) counts one step per batch so that Lightning's global step,
        checkpointing and logging advance as for any kind."""
        return torch.optim.SGD([self.clock], lr=0.0)

    def on_train_start(self) -> None:
        self._simulation = Simulation(self.spec, self.encoder.arrays(), learning=True, seed=int(self.seed))
        if self._pending is not None:
            self._simulation.restore(self._pending)
            self._pending = None

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        inputs, targets, steps = self.stream(batch)
        outputs = self._simulation.run(inputs, targets)
        with torch.no_grad():
            self.encoder.learned.copy_(torch.from_numpy(self._simulation.learned_weights()))
            if "voja" in self.spec.rules:
                self.encoder.scaled_encoders.copy_(torch.from_numpy(self._simulation.scaled_encoders()))
        self.optimizers().step()
        size = len(batch["input"])
        for name, (total, count) in self.score(outputs, targets, steps, batch.get("label")).items():
            value = self.figure(total, count)
            metric = "rmse" if self.channel else "accuracy"
            self.log(f"train/{metric}_{name}", value, on_step=True, on_epoch=True, batch_size=size)
        error = outputs["spiking_pes"] - targets
        self.log("train/loss", float(np.mean(error ** 2)), on_step=True, on_epoch=True, prog_bar=True,
                 batch_size=size)
        self.log("train/simulated_seconds", float(self._simulation.simulator.time), on_step=True, batch_size=size)

    def on_train_end(self) -> None:
        self._simulation = None

    # --- checkpoints: the simulator's state beside the buffers ---

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self._simulation is not None:
            checkpoint["nengo_simulator"] = [torch.from_numpy(value) for value in self._simulation.state()]

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint.get("nengo_simulator")
        self._pending = [value.numpy() for value in state] if state is not None else None

    # --- validation: a copy with learning off ---

    def on_validation_epoch_start(self) -> None:
        self._validation = Simulation(self.spec, self.encoder.arrays(), learning=False, seed=int(self.seed))
        self._sums = {}

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        inputs, targets, steps = self.stream(batch)
        outputs = self._validation.run(inputs)
        self.add(self._sums, self.score(outputs, targets, steps, batch.get("label")))

    def on_validation_epoch_end(self) -> None:
        for name, (total, count) in self._sums.items():
            value = self.figure(total, count)
            suffix = "" if name == "spiking_pes" else f"_{name}"
            self.log(f"{self.validation_metric}{suffix}", value, prog_bar=name == "spiking_pes")
        self._validation = None

    # --- evaluation ---

    @torch.no_grad()
    def simulate(self, inputs: torch.Tensor, labels: torch.Tensor | None = None,
                 chunk: int = 200) -> tuple[dict[str, float], dict[str, np.ndarray]]:
        """The trained network with learning off over inputs (a series' windows in order, or
        images): per readout its score (RMSE against the input, or accuracy) and its outputs
        (channel: [steps, d]) or decisions (images: [N]). The channel's scores include each
        readout's RMSE against the input through the same synapses (`<readout>_filtered`: the
        error of the representation, without the synapses' lag), and its outputs "reference"."""
        simulation = Simulation(self.spec, self.encoder.arrays(), learning=False, seed=int(self.seed))
        sums: dict[str, tuple[float, int]] = {}
        kept: dict[str, list[np.ndarray]] = {name: [] for name in readout_names()}
        if self.channel:
            kept["reference"] = []
        for start in range(0, len(inputs), chunk):
            batch = {"input": inputs[start:start + chunk]}
            if labels is not None:
                batch["label"] = labels[start:start + chunk]
            x, targets, steps = self.stream(batch)
            outputs = simulation.run(x)
            reference = outputs.pop("reference", None)
            scored = self.score(outputs, targets, steps, batch.get("label"))
            if reference is not None:
                filtered = self.score(outputs, reference, steps, None)
                scored.update({f"{name}_filtered": value for name, value in filtered.items()})
                outputs["reference"] = reference
            self.add(sums, scored)
            for name, output in outputs.items():
                kept[name].append(output if self.channel else self.decisions(output, steps))
        scores = {name: self.figure(total, count) for name, (total, count) in sums.items()}
        return scores, {name: np.concatenate(parts) for name, parts in kept.items()}

    @torch.no_grad()
    def spike_raster(self, inputs: torch.Tensor, neurons: int) -> np.ndarray:
        """The first `neurons` of the spiking ensemble, 0/1 per step [steps, neurons], while the
        network (learning off) reads `inputs`."""
        simulation = Simulation(self.spec, self.encoder.arrays(), learning=False, seed=int(self.seed), raster=neurons)
        x, _, _ = self.stream({"input": inputs})
        return simulation.run(x)["spikes"] > 0

    def plot_groups(self) -> dict[str, tuple[str, list[str]]]:
        metric = "rmse" if self.channel else "accuracy"
        names = readout_names()
        return {
            "training_curves": (f"training {metric} per batch, learning on (x: steps)",
                                [f"train/{metric}_{name}_step" for name in names]),
            "validation": (f"validation {metric}, learning off",
                           [self.validation_metric] + [f"{self.validation_metric}_{n}" for n in names[1:]]),
        }
