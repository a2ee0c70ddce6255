"""Continuous-time and reservoir networks: neural ODEs, CT-RNNs, liquid time-constant networks
(LTC), closed-form continuous-time networks (CfC) with dense or neural-circuit-policy (NCP)
wiring, echo state networks, and the discrete GRU/LSTM they are compared with. The specs, pure
pydantic; the modules are in `module.py` (recurrent networks), `ode.py` and `esn.py`.

Every recurrent kind reads a sequence [C, L] step by step and serves two kinds of data:
- labelled sequences (MNIST-1D): the class from the state after the last sample;
- a series to forecast (Mackey-Glass, fields `input` and `target`, the next value at each step):
  a linear readout of the state at every step, trained on the mean squared error, and run
  free (its own predictions fed back) by the `forecast` task.
With `elapsed_time: last_channel` the input's last channel is the time since the previous sample
(irregularly sampled data): the continuous-time kinds integrate their dynamics over that time,
the discrete GRU/LSTM read it as one more input."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from pipeline.spec.components import Strict

ElapsedTime = Literal["none", "last_channel"]
ELAPSED_DESCRIPTION = ("none: samples are evenly spaced (one time unit apart); last_channel: the input's last "
                       "channel is the time since the previous sample, which continuous-time kinds integrate over "
                       "and discrete ones read as an input.")


class _Recurrent(Strict):
    elapsed_time: ElapsedTime = Field("none", description=ELAPSED_DESCRIPTION)
    time_scale: float = Field(
        1.0, gt=0, description="Continuous-time kinds: model time units per sample interval (elapsed times are "
                               "multiplied by it). Below 1, the dynamics are slow against the sampling, so the "
                               "state remembers more samples.")

    @property
    def time_channels(self) -> int:
        """Trailing input channels that hold times, not values (noise and scaling leave them alone)."""
        return 1 if self.elapsed_time == "last_channel" else 0

    def check_input(self, shape: tuple[int, ...]) -> None:
        if len(shape) != 2:
            raise ValueError(f"takes sequences [channels, length], not inputs of shape {list(shape)}")
        if self.elapsed_time == "last_channel" and shape[0] < 2:
            raise ValueError("elapsed_time: last_channel needs a time channel besides the values (2+ channels)")


class WiringSpec(Strict):
    """How the neurons of an LTC or CfC network connect. fully_connected: every neuron to every
    neuron and input; ncp: a neural circuit policy (Lechner et al. 2020, `ncps.wirings.AutoNCP`):
    sensory -> inter -> command -> motor layers with sparse, seeded synapses, the motor neurons
    being the network's outputs."""

    kind: Literal["fully_connected", "ncp"] = "fully_connected"
    outputs: int = Field(
        10, gt=0, description="ncp: motor neurons (the network's outputs, read by the linear head).")
    sparsity: float = Field(
        0.5, ge=0.1, le=0.9, description="ncp: share of the possible synapses left out (AutoNCP's sparsity_level).")
    seed: int = Field(22222, ge=0, description="ncp: the wiring's own seed (AutoNCP's default).")


class RNNSpec(_Recurrent):
    """The discrete baseline: a GRU or LSTM (torch.nn), sized by `hidden` to match the parameter
    count of the network it is compared with (the evaluate stage reports both counts)."""

    kind: Literal["rnn"]
    cell: Literal["gru", "lstm"] = "gru"
    hidden: int = Field(64, gt=0)
    layers: int = Field(1, gt=0)


class RIMsSpec(_Recurrent):
    """Recurrent independent mechanisms (Goyal et al. 2021): `modules` recurrent cells (GRU or
    LSTM, `hidden` units each, weights of their own), of which `active` are updated at each step:
    those whose input attention (a query from the module's state against keys of the step's input
    and of a null input of zeros) puts the most weight on the real input. An active module reads
    the attention-weighted input value, updates its state with its cell, then reads every module's
    state through communication attention (residual); an inactive one keeps its state, and its
    cell's weights get no gradient from that step (its kept state still serves the active modules'
    communication as key and value). The readout reads every module's state."""

    kind: Literal["rims"]
    cell: Literal["gru", "lstm"] = "gru"
    modules: int = Field(6, gt=1, description="K, the recurrent modules.")
    active: int = Field(4, gt=0, description="k, the modules updated at each step (k < K).")
    hidden: int = Field(32, gt=0, description="Units of each module.")
    input_key: int = Field(32, gt=0, description="Size of the input attention's queries and keys.")
    input_value: int = Field(32, gt=0, description="Size of the input attention's value (each module's input).")
    communication_key: int = Field(32, gt=0, description="Size of the communication attention's queries and keys.")

    @model_validator(mode="after")
    def _check(self) -> RIMsSpec:
        if self.active >= self.modules:
            raise ValueError(f"active ({self.active}) must be below modules ({self.modules}): with all active there "
                             "is no selection")
        return self


class CTRNNSpec(_Recurrent):
    """A continuous-time RNN (Funahashi & Nakamura 1993): dh/dt = (-h + tanh(W x + U h + b)) / tau,
    one learned time constant per neuron, integrated by `unfolds` explicit Euler steps over each
    elapsed time. ncps has no CT-RNN for torch, so this cell is written here."""

    kind: Literal["ct_rnn"]
    hidden: int = Field(64, gt=0)
    tau_init: float = Field(1.0, gt=0, description="Initial time constant of every neuron (learned, kept > 0).")
    unfolds: int = Field(3, gt=0, description="Euler steps per input sample.")


class LTCSpec(_Recurrent):
    """A liquid time-constant network (Hasani et al. 2021), `ncps.torch.LTC`: each neuron's time
    constant depends on its input; the ODE is solved by `ode_unfolds` fused semi-implicit steps."""

    kind: Literal["ltc"]
    units: int = Field(32, gt=1, description="Neurons (with ncp wiring: all of them, motor neurons included).")
    wiring: WiringSpec = WiringSpec()
    ode_unfolds: int = Field(6, gt=0)
    mixed_memory: bool = Field(False, description="Pair each neuron with an LSTM memory cell (ncps mixed_memory).")


class CfCSpec(_Recurrent):
    """A closed-form continuous-time network (Hasani et al. 2022), `ncps.torch.CfC`: the LTC's
    dynamics solved in closed form (no ODE solver), gated by the elapsed time."""

    kind: Literal["cfc"]
    units: int = Field(64, gt=1, description="Neurons (with ncp wiring: all of them, motor neurons included).")
    wiring: WiringSpec = WiringSpec()
    mode: Literal["default", "pure", "no_gate"] = Field(
        "default", description="default: the gated closed form; pure: the direct solution; no_gate: without "
                               "the time gate.")
    backbone_units: int = Field(64, gt=0, description="fully_connected only: width of the backbone MLP.")
    backbone_layers: int = Field(1, ge=0, description="fully_connected only: depth of the backbone MLP.")
    backbone_dropout: float = Field(0.0, ge=0, lt=1)
    mixed_memory: bool = Field(False)

    @model_validator(mode="after")
    def _wired(self) -> CfCSpec:
        if self.wiring.kind == "ncp" and self.wiring.outputs >= self.units - 2:
            raise ValueError(f"an ncp wiring of {self.units} units needs more than outputs + 2 "
                             f"({self.wiring.outputs} + 2) neurons")
        return self


class ESNSpec(_Recurrent):
    """An echo state network (Jaeger 2001): a fixed, sparse, random leaky-tanh reservoir scaled to
    `spectral_radius`; only the linear readout learns, by ridge regression in closed form over one
    pass of the training data (no gradient steps)."""

    kind: Literal["esn"]
    units: int = Field(500, gt=1, description="Reservoir neurons.")
    spectral_radius: float = Field(0.9, gt=0, description="Of the recurrent weight matrix, set after sampling.")
    leak_rate: float = Field(0.3, gt=0, le=1, description="x <- (1 - a) x + a tanh(W_in u + W x + b).")
    input_scaling: float = Field(1.0, gt=0, description="Input weights drawn uniformly in +-input_scaling.")
    bias_scaling: float = Field(0.2, ge=0)
    connectivity: float = Field(0.1, gt=0, le=1, description="Share of nonzero recurrent weights.")
    ridge: float = Field(1e-6, ge=0, description="L2 strength of the readout's ridge regression.")
    washout: int = Field(0, ge=0, description="Leading steps of each training window left out of the fit.")
    features: Literal["last", "mean", "concat"] = Field(
        "concat", description="Classification: the readout reads the last state, the mean state, or the states at "
                              "`concat_points` evenly spaced steps, concatenated.")
    concat_points: int = Field(4, gt=0)


class NeuralODESpec(Strict):
    """A classifier whose feature extractor is an ODE block (Chen et al. 2018): a Conv1d stem, then
    dh/dt = f(h, t) with f a small conv net, integrated from 0 to `t_end` by `torchdiffeq`, then
    pooling and a linear head. `block: resnet` replaces the ODE by the residual block h + f(h) it
    generalises (one Euler step): the comparison the family is for."""

    kind: Literal["neural_ode"]
    block: Literal["ode", "resnet"] = "ode"
    channels: int = Field(32, gt=0)
    solver: Literal["dopri5", "rk4", "euler", "midpoint"] = "dopri5"
    rtol: float = Field(1e-3, gt=0)
    atol: float = Field(1e-4, gt=0)
    step_size: float = Field(0.25, gt=0, description="Fixed-step solvers only (rk4, euler, midpoint).")
    t_end: float = Field(1.0, gt=0)
    adjoint: bool = Field(False, description="Gradients by the adjoint method (memory constant in the steps).")

    def check_input(self, shape: tuple[int, ...]) -> None:
        if len(shape) != 2:
            raise ValueError(f"takes sequences [channels, length], not inputs of shape {list(shape)}")
