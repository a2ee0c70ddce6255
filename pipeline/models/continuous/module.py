"""The recurrent kinds of the continuous-time family: GRU/LSTM (the discrete baseline), CT-RNN,
LTC and CfC (the cells of the authors' `ncps` library), each a `core` that reads a sequence step
by step, given the time elapsed since the previous sample, inside one `SequenceNet` that
classifies labelled sequences or forecasts a series (see the package docstring)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.data.datamodule import model_input
from pipeline.extras import require
from pipeline.models.base import Supervised
from pipeline.models.continuous import CfCSpec, CTRNNSpec, LTCSpec, RNNSpec, WiringSpec
from pipeline.spec.components import TrainSpec

State = torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None


class Core(nn.Module):
    """A recurrent network read step by step: `forward(x [B, L, C], elapsed [B, L, 1], state)`
    -> (outputs [B, L, out_dim], state after the last step). `neurons` and `in_dim` size the
    dense network its synapses are counted against."""

    out_dim: int
    neurons: int
    in_dim: int

    def synapses(self) -> tuple[int, int]:
        """(used, dense): connections into the neurons (from the inputs and from each other) that
        exist, and those of a fully connected network of the same neurons."""
        dense = (self.in_dim + self.neurons) * self.neurons
        return dense, dense

    def time_constants(self) -> torch.Tensor | None:
        """Each neuron's time constant, where the model has one."""
        return None


class GRUCore(Core):
    """torch.nn.GRU / LSTM, one step per sample: the elapsed time, when given, is an input."""

    def __init__(self, spec: RNNSpec, in_dim: int):
        super().__init__()
        cls = nn.GRU if spec.cell == "gru" else nn.LSTM
        self.rnn = cls(in_dim, spec.hidden, num_layers=spec.layers, batch_first=True)
        self.out_dim = spec.hidden  # the last layer's
        self.neurons = spec.hidden * spec.layers
        self.in_dim = in_dim

    def forward(self, x: torch.Tensor, elapsed: torch.Tensor, state: State = None) -> tuple[torch.Tensor, State]:
        outputs, state = self.rnn(x, state)
        return outputs, state

    def synapses(self) -> tuple[int, int]:
        # Every layer's neurons receive from its inputs (the previous layer's neurons) and itself.
        hidden, layers = self.rnn.hidden_size, self.rnn.num_layers
        dense = (self.in_dim + hidden) * hidden + (layers - 1) * 2 * hidden * hidden
        return dense, dense


class CTRNNCore(Core):
    """dh/dt = (-h + tanh(W x + U h + b)) / tau, `unfolds` Euler steps of dt / unfolds over each
    sample's elapsed time dt; tau = softplus(raw) + 0.01 stays positive."""

    def __init__(self, spec: CTRNNSpec, in_dim: int):
        super().__init__()
        self.input = nn.Linear(in_dim, spec.hidden)
        self.recurrent = nn.Linear(spec.hidden, spec.hidden, bias=False)
        raw = torch.log(torch.expm1(torch.tensor(max(spec.tau_init - 0.01, 1e-3))))  # softplus^-1
        self.raw_tau = nn.Parameter(raw.repeat(spec.hidden))
        self.unfolds = spec.unfolds
        self.out_dim = self.neurons = spec.hidden
        self.in_dim = in_dim

    def tau(self) -> torch.Tensor:
        return F.softplus(self.raw_tau) + 0.01

    def forward(self, x: torch.Tensor, elapsed: torch.Tensor, state: State = None) -> tuple[torch.Tensor, State]:
        drive = self.input(x)  # [B, L, H]: the input's part for every step at once
        h = state if state is not None else x.new_zeros(x.shape[0], self.neurons)
        tau, outputs = self.tau(), []
        for t in range(x.shape[1]):
            dt = elapsed[:, t] / self.unfolds  # [B, 1]
            for _ in range(self.unfolds):
                h = h + dt * (torch.tanh(drive[:, t] + self.recurrent(h)) - h) / tau
            outputs.append(h)
        return torch.stack(outputs, dim=1), h

    def time_constants(self) -> torch.Tensor:
        return self.tau().detach()


def _wiring(spec: WiringSpec, units: int):
    wirings = require("ncps.wirings", "continuous", f"the {spec.kind} wiring")
    if spec.kind == "ncp":
        return wirings.AutoNCP(units, spec.outputs, sparsity_level=spec.sparsity, seed=spec.seed)
    return wirings.FullyConnected(units)


class NCPSCore(Core):
    """An `ncps` cell (LTCCell, CfCCell or WiredCfCCell) run over the sequence here, because the
    library's sequence wrappers squeeze the elapsed times to [B], which does not broadcast over
    the neurons for a batch of irregular sequences. With `mixed_memory`, an LSTM cell runs beside
    it, as in ncps."""

    def __init__(self, spec: LTCSpec | CfCSpec, in_dim: int):
        super().__init__()
        ncps = require("ncps.torch", "continuous", f"the {spec.kind} cell")
        self.wiring = None
        if isinstance(spec, LTCSpec):
            self.wiring = _wiring(spec.wiring, spec.units)
            network = ncps.LTC(in_dim, self.wiring, mixed_memory=spec.mixed_memory, ode_unfolds=spec.ode_unfolds)
            self.out_dim = self.wiring.output_dim
        elif spec.wiring.kind == "ncp":
            self.wiring = _wiring(spec.wiring, spec.units)
            network = ncps.CfC(in_dim, self.wiring, mixed_memory=spec.mixed_memory, mode=spec.mode)
            self.out_dim = self.wiring.output_dim
        else:
            network = ncps.CfC(in_dim, spec.units, mixed_memory=spec.mixed_memory, mode=spec.mode,
                          backbone_units=spec.backbone_units, backbone_layers=spec.backbone_layers,
                          backbone_dropout=spec.backbone_dropout)
            self.out_dim = spec.units
        self.cell = network.rnn_cell
        self.lstm = network.lstm if spec.mixed_memory else None
        self.neurons = spec.units
        self.in_dim = in_dim

    def forward(self, x: torch.Tensor, elapsed: torch.Tensor, state: State = None) -> tuple[torch.Tensor, State]:
        batch = x.shape[0]
        if state is None:
            h = x.new_zeros(batch, self.neurons)
            c = x.new_zeros(batch, self.neurons) if self.lstm is not None else None
        else:
            h, c = state if self.lstm is not None else (state, None)
        outputs = []
        for t in range(x.shape[1]):
            if self.lstm is not None:
                h, c = self.lstm(x[:, t], (h, c))
            out, h = self.cell(x[:, t], h, elapsed[:, t])  # elapsed [B, 1] broadcasts over the neurons
            outputs.append(out)
        return torch.stack(outputs, dim=1), ((h, c) if self.lstm is not None else h)

    def synapses(self) -> tuple[int, int]:
        """The connections the cell computes through (a mixed-memory LSTM cell connects every input
        and neuron to every neuron, so with it the network is dense whatever its wiring).

        An NCP-wired LTC masks its weights by the wiring's adjacency, so those are its synapses. A
        NCP-wired CfC (ncps' WiredCfCCell) is a stack of CfC cells, one per NCP layer (inter,
        command, motor), each reading the layer below and its own neurons: its `ff1`/`ff2` maps
        are masked by the wiring between layers but connect the neurons of a layer densely, and in
        the `default` and `no_gate` modes its time gates (`time_a`, `time_b`) are not masked at
        all, so every input of a layer reaches every neuron of it; only `pure` mode (no time gate)
        computes through the mask alone. Counted as computed, not as the wiring's diagram."""
        dense = (self.in_dim + self.neurons) * self.neurons
        if self.wiring is None or self.lstm is not None:
            return dense, dense
        layers = getattr(self.cell, "_layers", None)
        if layers is None:
            used = int(abs(self.wiring.adjacency_matrix).sum() + abs(self.wiring.sensory_adjacency_matrix).sum())
            return used, dense
        used = sum(int(layer.sparsity_mask.count_nonzero()) if layer.mode == "pure" else layer.sparsity_mask.numel()
                   for layer in layers)
        return used, dense

    def time_constants(self) -> torch.Tensor | None:
        """LTC: each neuron's resting time constant C_m / g_leak (its input shortens it)."""
        params = getattr(self.cell, "_params", None)
        if params is None or "cm" not in params:
            return None
        make_positive = self.cell.make_positive_fn
        return (make_positive(params["cm"]) / make_positive(params["gleak"])).detach()


class RecurrentEncoder(nn.Module):
    """A core over a batch of sequences [B, C, L]: `sequence` gives its output at every step,
    calling it gives the output after the last sample (the features downstream tasks read). With
    `elapsed` the last channel is the time since the previous sample; else samples are one time
    unit apart."""

    def __init__(self, core: Core, elapsed: bool, time_scale: float = 1.0):
        super().__init__()
        self.core = core
        self.elapsed = elapsed
        self.time_scale = time_scale
        self.out_dim = core.out_dim

    def sequence(self, inputs: torch.Tensor, state: State = None) -> tuple[torch.Tensor, State]:
        x = inputs.transpose(1, 2)  # [B, L, C]
        elapsed = x[..., -1:] if self.elapsed else x.new_ones(x.shape[0], x.shape[1], 1)
        return self.core(x, elapsed * self.time_scale, state)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.sequence(inputs)[0][:, -1]


class SequenceNet(Supervised):
    """A recurrent core with a linear readout. Labelled data (num_classes > 0): the class from the
    output after the last sample, trained on cross-entropy. A series (num_classes == 0): the next
    value from the output at every step, trained on the mean squared error against `target`; the
    validation figure is then the normalised RMSE (`val/nrmse`, lower is better)."""

    def __init__(self, core: Core, spec, train: TrainSpec, num_classes: int):
        super().__init__(RecurrentEncoder(core, spec.elapsed_time == "last_channel", spec.time_scale), train)
        self.forecasting = num_classes == 0
        self.head = nn.Linear(core.out_dim, 1 if self.forecasting else num_classes)
        if self.forecasting:
            self.validation_metric = "val/nrmse"

    # --- labelled sequences

    def classify(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(inputs))

    # --- a series

    def predict_next(self, inputs: torch.Tensor) -> torch.Tensor:
        """[B, 1, L] -> the next value predicted at every step [B, 1, L], reading the true inputs."""
        outputs, _ = self.encoder.sequence(inputs)
        return self.head(outputs).transpose(1, 2)

    @torch.no_grad()
    def generate(self, inputs: torch.Tensor, steps: int) -> torch.Tensor:
        """Reads the W true steps [B, 1, W], then runs free for `steps` steps, each prediction fed
        back as the next input: [B, 1, steps]."""
        outputs, state = self.encoder.sequence(inputs)
        value = self.head(outputs[:, -1:]).transpose(1, 2)  # [B, 1, 1]
        predicted = [value]
        for _ in range(steps - 1):
            outputs, state = self.encoder.sequence(value, state)
            value = self.head(outputs).transpose(1, 2)
            predicted.append(value)
        return torch.cat(predicted, dim=2)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        if not self.forecasting:
            return super().training_step(batch, batch_idx)
        loss = F.mse_loss(self.predict_next(model_input(batch["input"])), batch["target"])
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(batch["input"]),
                 sync_dist=True)
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        if not self.forecasting:
            return super().validation_step(batch, batch_idx)
        target = batch["target"]
        error = F.mse_loss(self.predict_next(model_input(batch["input"])), target).sqrt() / target.std()
        self.log("val/nrmse", error, on_epoch=True, prog_bar=True, batch_size=len(target), sync_dist=True)

    # --- what the network_stats task reports

    def network_stats(self, probe=None) -> dict[str, float]:
        """`probe` (run the network once on a test batch) is for the figures counted per pass; a
        recurrent network has none."""
        core = self.encoder.core
        used, dense = core.synapses()
        stats = {"parameters": float(sum(p.numel() for p in self.parameters())),
                 "neurons": float(core.neurons), "synapses_used": float(used), "synapses_dense": float(dense)}
        tau = core.time_constants()
        if tau is not None:
            stats.update(tau_mean=tau.mean().item(), tau_min=tau.min().item(), tau_max=tau.max().item())
        return stats


class _CoreKind(SequenceNet):
    """A kind that is its `core_type` inside a SequenceNet, built as every family is:
    Class(model_spec, train_spec, input_shape, num_classes)."""

    core_type: type[Core]

    def __init__(self, spec, train: TrainSpec, input_shape: tuple[int, ...], num_classes: int):
        super().__init__(self.core_type(spec, input_shape[0]), spec, train, num_classes)


class RNN(_CoreKind):
    core_type = GRUCore


class CTRNN(_CoreKind):
    core_type = CTRNNCore


class LTC(_CoreKind):
    core_type = NCPSCore


class CfC(_CoreKind):
    core_type = NCPSCore
