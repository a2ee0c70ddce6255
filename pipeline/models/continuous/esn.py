"""The echo state network (Jaeger 2001): a fixed, sparse, random leaky-tanh reservoir read by a
linear readout fitted by ridge regression in closed form. The reservoir is a `Core` like the
other recurrent kinds, so the ESN shares `SequenceNet`'s classification and forecasting API; only
its training differs: no gradient steps, one pass over the training data accumulating the sums
of the normal equations, one solve."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.data.datamodule import model_input
from pipeline.models.continuous import ESNSpec
from pipeline.models.continuous.module import Core, RecurrentEncoder, SequenceNet, State
from pipeline.spec.components import TrainSpec


class ReservoirCore(Core):
    """x <- (1 - a) x + a tanh(W_in u + W x + b), all weights fixed: W_in uniform in
    +-input_scaling, b uniform in +-bias_scaling, W with round(connectivity * units^2) nonzeros
    (uniform in +-1 at random positions) rescaled to the spec's spectral radius. Over an elapsed
    time dt (in model time units: times `time_scale`) the leak compounds, a_dt = 1 - (1 - a)^dt
    (the state decays as exp(-dt / tau) with tau = -1 / ln(1 - a)), which is a itself for
    samples one time unit apart.

    The weights are buffers: saved in the state_dict (and so in checkpoints and model.pt), never
    trained, not counted as parameters. They are drawn from a generator of their own, seeded by
    one draw from torch's global generator: `seed_everything` makes the reservoir reproducible,
    and the global stream advances by one draw whatever the reservoir's size."""

    def __init__(self, spec: ESNSpec, in_dim: int):
        super().__init__()
        units = spec.units
        generator = torch.Generator().manual_seed(int(torch.randint(2**63 - 1, ()).item()))

        def uniform(*shape: int, scale: float) -> torch.Tensor:
            return (2 * torch.rand(*shape, generator=generator) - 1) * scale

        self.register_buffer("w_in", uniform(units, in_dim, scale=spec.input_scaling))
        self.register_buffer("bias", uniform(units, scale=spec.bias_scaling))
        nonzero = max(1, round(spec.connectivity * units * units))
        recurrent = torch.zeros(units * units)
        recurrent[torch.randperm(units * units, generator=generator)[:nonzero]] = uniform(nonzero, scale=1.0)
        recurrent = recurrent.view(units, units)
        radius = _spectral_radius(recurrent)
        if radius == 0:
            raise ValueError(f"the sampled recurrent weights ({nonzero} nonzeros among {units} units) have no "
                             f"nonzero eigenvalue to scale to spectral_radius {spec.spectral_radius}: raise "
                             f"connectivity")
        self.register_buffer("w", recurrent * (spec.spectral_radius / radius))
        self.leak_rate = spec.leak_rate
        self.out_dim = self.neurons = units
        self.in_dim = in_dim

    def forward(self, x: torch.Tensor, elapsed: torch.Tensor, state: State = None) -> tuple[torch.Tensor, State]:
        leak = 1 - (1 - self.leak_rate) ** elapsed  # [B, L, 1]
        drive = F.linear(x, self.w_in, self.bias)  # [B, L, units]: the input's part for every step at once
        h = state if state is not None else x.new_zeros(x.shape[0], self.neurons)
        outputs = []
        for t in range(x.shape[1]):
            h = h + leak[:, t] * (torch.tanh(drive[:, t] + F.linear(h, self.w)) - h)
            outputs.append(h)
        return torch.stack(outputs, dim=1), h

    def synapses(self) -> tuple[int, int]:
        """Used: the nonzero recurrent weights and every input weight."""
        used = int(torch.count_nonzero(self.w)) + self.w_in.numel()
        return used, (self.in_dim + self.neurons) * self.neurons

    def time_constants(self) -> torch.Tensor:
        """The leak's time constant tau = -1 / ln(1 - a), the same for every neuron (0 at a = 1:
        no memory beyond the recurrence)."""
        tau = 0.0 if self.leak_rate == 1 else -1 / math.log(1 - self.leak_rate)
        return torch.full((self.neurons,), tau)

    def spectral_radius(self) -> float:
        """The largest |eigenvalue| of W, measured."""
        return _spectral_radius(self.w)


def _spectral_radius(weights: torch.Tensor) -> float:
    return torch.linalg.eigvals(weights.detach().cpu().double()).abs().max().item()


class ReservoirEncoder(RecurrentEncoder):
    """The classifier's features: the reservoir's states after the first `washout` steps, read as
    the last state, their mean, or the states at `concat_points` evenly spaced steps ending with
    the last, concatenated (concat_points x units features). Downstream tasks read the same."""

    def __init__(self, core: ReservoirCore, spec: ESNSpec):
        super().__init__(core, spec.elapsed_time == "last_channel", spec.time_scale)
        self.features, self.points, self.washout = spec.features, spec.concat_points, spec.washout
        self.out_dim = core.out_dim * (self.points if self.features == "concat" else 1)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        states = self.sequence(inputs)[0][:, self.washout:]  # [B, steps, units]
        if self.features == "last":
            return states[:, -1]
        if self.features == "mean":
            return states.mean(dim=1)
        steps = states.shape[1]
        picked = [(k + 1) * steps // self.points - 1 for k in range(self.points)]
        return states[:, picked].flatten(1)


class RidgeRegression:
    """Least squares with an L2 penalty, from sums over the data: the rows X (with a column of
    ones for the bias, penalised like the weights; reservoirpy 0.4's Ridge centres X and Y and
    leaves the bias unpenalised instead) and targets Y arrive in
    batches, and X^T X, X^T Y, the sum of Y^2 and the row count accumulate in float64 (on the
    CPU for a device without float64, MPS). The solution of (X^T X + ridge I) W = X^T Y is the
    same however the rows were batched. float64 keeps the sums of many batches exact enough for
    the solve at a small ridge, whose system is as ill-conditioned as X^T X."""

    def __init__(self, features: int, outputs: int, device: torch.device):
        device = torch.device("cpu") if device.type == "mps" else device
        self.gram = torch.zeros(features + 1, features + 1, dtype=torch.float64, device=device)
        self.cross = torch.zeros(features + 1, outputs, dtype=torch.float64, device=device)
        self.squares = torch.zeros((), dtype=torch.float64, device=device)
        self.count = torch.zeros((), dtype=torch.float64, device=device)

    def add(self, rows: torch.Tensor, targets: torch.Tensor) -> None:
        """rows [N, features], targets [N, outputs]."""
        rows = rows.to(self.gram.device, torch.float64)
        rows = torch.cat([rows, rows.new_ones(len(rows), 1)], dim=1)
        targets = targets.to(self.gram.device, torch.float64)
        self.gram.addmm_(rows.T, rows)
        self.cross.addmm_(rows.T, targets)
        self.squares += targets.square().sum()
        self.count += len(rows)

    def solve(self, ridge: float, reduce: Callable[[torch.Tensor], torch.Tensor] | None = None
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(weight [outputs, features], bias [outputs], mean squared error of the fit on the
        rows), in float64 on the CPU. `reduce` sums each accumulated tensor over the processes of
        a distributed run first. With ridge > 0 the system is positive definite: a Cholesky
        solve; at ridge 0 (or where rounding left it indefinite) the minimum-norm least-squares
        solution, which also stands when there are fewer rows than features."""
        sums = (self.gram, self.cross, self.squares, self.count)
        gram, cross, squares, count = (t.cpu() for t in (map(reduce, sums) if reduce else sums))
        system = gram + ridge * torch.eye(len(gram), dtype=torch.float64)
        factor, info = torch.linalg.cholesky_ex(system)
        if ridge > 0 and info == 0:
            solution = torch.cholesky_solve(cross, factor)
        else:
            solution = torch.linalg.lstsq(system, cross, driver="gelsd").solution
        # ||Y - X W||^2 from the sums: sum Y^2 - 2 <W, X^T Y> + <W, X^T X W>.
        residual = squares - 2 * (solution * cross).sum() + (solution * (gram @ solution)).sum()
        mse = residual.clamp(min=0) / (count * cross.shape[1])
        return solution[:-1].T, solution[-1], mse


class ESN(SequenceNet):
    """An echo state network trained through the ordinary training stage, without gradients.

    Each training epoch runs the reservoir over the training batches, accumulates the readout's
    normal equations (`RidgeRegression`: batched matmuls, no loop over examples) and, at the
    epoch's last batch, solves them in float64 and writes the solution into the linear head, so
    that the validation after the epoch and any checkpoint written at its end hold the fitted
    readout. Rows and targets (`readout_data`): labelled sequences, the `features` of each
    sequence (`ReservoirEncoder`) against its one-hot label; a series, the state at every step
    after `washout` against the next value. "train/loss" is the fit's mean squared error on
    those targets (one-hot ones for a classifier, so not a cross-entropy).

    One epoch is all an ESN needs: every epoch starts the sums afresh and ends with the same
    readout (up to the order of summation), so `train.max_epochs: 1` is the setting, and more
    epochs cost time for nothing. A run resumed from a checkpoint written mid-epoch fits that
    epoch's readout on the batches after the checkpoint only; the next full epoch, if any,
    fits it on all of them. `parameters` in network_stats counts the readout's weights, the only
    learned ones; the reservoir's are fixed buffers, counted as synapses."""

    drop_last = False
    """The readout is fitted on every training example: the last incomplete batch too, which a
    gradient fit drops (up to a tenth of the Mackey-Glass windows at batch size 16)."""

    def __init__(self, spec: ESNSpec, train: TrainSpec, input_shape: tuple[int, ...], num_classes: int):
        channels, length = input_shape
        if spec.washout >= length:
            raise ValueError(f"washout {spec.washout} leaves none of the {length} steps to fit the readout on")
        if num_classes and spec.features == "concat" and spec.concat_points > length - spec.washout:
            raise ValueError(f"concat_points {spec.concat_points} exceeds the {length - spec.washout} steps after "
                             f"the washout")
        if train.gradient_clip_norm is not None:
            raise ValueError("an ESN fits its readout in closed form, without gradients: remove "
                             "train.gradient_clip_norm")
        core = ReservoirCore(spec, channels)
        super().__init__(core, spec, train, num_classes)
        if not self.forecasting:
            # SequenceNet's head reads one step's output; the classifier's reads the features.
            self.encoder = ReservoirEncoder(core, spec)
            self.head = nn.Linear(self.encoder.out_dim, num_classes)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.head.requires_grad_(False)
        self.ridge, self.washout = spec.ridge, spec.washout
        # training_step steps the (inert) optimiser itself; Lightning runs no backward.
        self.automatic_optimization = False
        self._regression: RidgeRegression | None = None

    @torch.no_grad()
    def readout_data(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """The readout's rows [N, features] and targets [N, outputs] from a batch: one row per
        sequence (classifier) or per step after the washout (forecaster)."""
        inputs = model_input(batch["input"])
        if self.forecasting:
            states, _ = self.encoder.sequence(inputs)
            targets = model_input(batch["target"])[:, 0, self.washout:]  # [B, steps]
            return states[:, self.washout:].flatten(0, 1), targets.reshape(-1, 1)
        return self.encoder(inputs), F.one_hot(batch["label"], self.head.out_features).float()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """No gradient ever reaches the readout: this optimiser (learning rate 0, over weights
        that have no .grad) only counts one step per batch, so that Lightning's global step, and
        with it checkpointing, logging and the throughput figure, advances as for any kind."""
        return torch.optim.SGD(self.head.parameters(), lr=0.0)

    def on_train_start(self) -> None:
        self._regression = None  # a fit never continues the sums of an earlier, interrupted one

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        if self._regression is None:
            # The epoch's first batch, or the first after resuming mid-epoch (when Lightning
            # does not call on_train_epoch_start).
            self._regression = RidgeRegression(self.head.in_features, self.head.out_features, self.device)
        self._regression.add(*self.readout_data(batch))
        self.optimizers().step()
        # Solved here rather than in on_train_epoch_end, which Lightning calls after the epoch's
        # validation and after the callbacks' own epoch-end hooks (the checkpoint among them).
        if batch_idx + 1 == self.trainer.num_training_batches:
            self._fit_readout()

    def _fit_readout(self) -> None:
        """Solves the epoch's sums, over every process of a distributed run, into the head."""
        weight, bias, mse = self._regression.solve(
            self.ridge, reduce=lambda t: self.trainer.strategy.reduce(t, reduce_op="sum"))
        self.head.weight.copy_(weight)
        self.head.bias.copy_(bias)
        self._regression = None
        self.log("train/loss", float(mse), on_step=True, on_epoch=True, prog_bar=True, batch_size=1)

    def network_stats(self, probe=None) -> dict[str, float]:
        return {**super().network_stats(probe), "spectral_radius": self.encoder.core.spectral_radius()}
