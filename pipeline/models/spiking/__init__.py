"""Spiking networks: the spec sections for neurons, surrogate gradients and spike encodings.
Pure pydantic (the tensors live in `neurons.py`, `surrogates.py` and `encoding.py`)."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, model_validator

from pipeline.spec.components import Strict


class SurrogateSpec(Strict):
    """The derivative used for the spike's Heaviside step in the backward pass, as a function of
    x = v - A (membrane potential minus threshold)."""

    name: Literal["fast_sigmoid", "atan", "triangle"] = Field(
        "fast_sigmoid",
        description="fast_sigmoid: 1 / (slope |x| + 1)^2 (SuperSpike); atan: (slope / 2) / (1 + (pi/2 slope x)^2); "
                    "triangle: slope / v_th * max(0, 1 - |x| / v_th) (Bellec et al.)")
    slope: float = Field(25.0, gt=0, description="Steepness (fast_sigmoid, atan) or height gamma (triangle, e.g. 0.3).")


class NeuronSpec(Strict):
    """Leaky integrate-and-fire: v <- alpha v + (1 - alpha) I - z v_th with alpha = exp(-dt / tau_mem)
    (reset by subtraction), z = H(v - A). ALIF adapts its threshold A = v_th + beta b with
    b <- rho b + (1 - rho) z, rho = exp(-dt / tau_adapt)."""

    kind: Literal["lif", "alif"] = "lif"
    tau_mem: float = Field(20.0, gt=0, description="Membrane time constant (ms).")
    tau_adapt: float = Field(200.0, gt=0, description="alif: threshold adaptation time constant (ms).")
    beta: float = Field(1.8, ge=0, description="alif: how far each unit of adaptation raises the threshold.")
    threshold: float = Field(1.0, gt=0, description="v_th.")
    refractory: int = Field(0, ge=0, description="Time steps after a spike during which the neuron cannot spike.")
    dt: float = Field(1.0, gt=0, description="Time step (ms).")
    detach_reset: bool = Field(
        True, description="No gradient through the reset term (the common choice; Zenke & Vogels 2021).")

    @property
    def alpha(self) -> float:
        return math.exp(-self.dt / self.tau_mem)

    @property
    def rho(self) -> float:
        return math.exp(-self.dt / self.tau_adapt)


class EncodingSpec(Strict):
    """How an input becomes spikes over `steps` time steps.
    rate: each step a Bernoulli spike with probability the input intensity (in [0, 1]).
    latency: one spike per input, earlier the stronger (linear: t = (1 - x) (steps - 1); log:
    t = tau ln(x / (x - threshold)), clipped), none below `threshold`.
    delta: a spike where the input changes by more than `threshold` from the previous step (for
    sequences; an image is read row by row), on and off changes in separate channels.
    direct: no spikes at the input: the analog input is a constant current for `steps` steps and
    the first layer's neurons turn it into spikes (Rathi & Roy 2020). That layer's synapses then
    multiply-accumulate, and are counted as MACs in the energy estimate."""

    kind: Literal["rate", "latency", "delta", "direct"] = "rate"
    steps: int = Field(25, gt=0, description="Time steps the encoding spans.")
    gain: float = Field(1.0, gt=0, le=1, description="rate: firing probability = gain * intensity.")
    latency: Literal["linear", "log"] = Field("linear", description="latency: how intensity maps to spike time.")
    tau: float = Field(5.0, gt=0, description="latency (log): the RC time constant, in steps.")
    threshold: float = Field(0.01, ge=0, description="latency: no spike below it; delta: the change that spikes.")
    on_off: bool = Field(True, description="delta: separate channels for increases and decreases.")

    @model_validator(mode="after")
    def _check(self) -> EncodingSpec:
        if self.kind == "latency" and self.latency == "log" and self.threshold <= 0:
            raise ValueError("latency encoding with latency: log needs threshold > 0")
        return self


class SNNConvSpec(Strict):
    """A convolutional spiking network trained by backpropagation through time with surrogate
    gradients: [3x3 conv -> LIF -> 2x2 max pool (spikes stay 0/1)] per entry of `channels`, a fully connected
    LIF layer, and a leaky-integrator readout whose potential, averaged over time, gives the
    class scores."""

    kind: Literal["snn_conv"]
    encoding: EncodingSpec = EncodingSpec(kind="rate", steps=8)
    neuron: NeuronSpec = NeuronSpec(tau_mem=5.0)
    surrogate: SurrogateSpec = SurrogateSpec()
    channels: list[int] = Field([32, 64], min_length=1, description="Channels of each conv -> LIF -> pool block.")
    hidden: int = Field(256, gt=0, description="LIF units of the fully connected layer.")

    @model_validator(mode="after")
    def _check(self) -> SNNConvSpec:
        if self.encoding.kind == "delta":
            raise ValueError("encoding 'delta' turns an image into rows over time, which a 2-D convolution "
                             "cannot take; use rate or latency")
        if any(c <= 0 for c in self.channels):
            raise ValueError(f"channels must all be > 0 (got {self.channels})")
        return self

    def check_input(self, shape: tuple[int, ...]) -> None:
        side = min(shape[1:])
        if side >> len(self.channels) == 0:
            raise ValueError(f"{len(self.channels)} pooling blocks halve {side} px to nothing")


class LSNNSpec(Strict):
    """A long short-term memory spiking network (Bellec et al. 2018): one recurrent population of
    LIF and adaptive-threshold (ALIF) neurons, no self-connections, and a leaky readout
    y <- kappa y + (1 - kappa)(W_out z + b). It reads a sequence one element per time step
    (`repeat` steps each); an image is read row by row. Trained by e-prop (Bellec et al. 2020):
    eligibility traces per synapse updated online as the sequence runs, times a learning signal
    sent back through feedback weights; no backward pass through time. Or by BPTT for comparison."""

    kind: Literal["lsnn"]
    hidden: int = Field(128, gt=1, description="Recurrent neurons, LIF and ALIF together.")
    adaptive_fraction: float = Field(
        0.4, ge=0, le=1, description="Share of the recurrent neurons that are ALIF; 0 is the LIF-only ablation.")
    neuron: NeuronSpec = NeuronSpec(kind="alif", tau_mem=20.0, tau_adapt=200.0, beta=1.8)
    surrogate: SurrogateSpec = SurrogateSpec(name="triangle", slope=0.3)
    input: Literal["current", "delta"] = Field(
        "current", description="current: the signal itself as input current (the first synapses multiply-"
                               "accumulate); delta: on/off spikes where it changes by more than `delta_threshold`.")
    delta_threshold: float = Field(0.1, gt=0, description="input delta: the change that spikes.")
    repeat: int = Field(1, gt=0, description="Time steps each element of the sequence is held for.")
    readout_tau: float = Field(20.0, gt=0, description="Readout leak time constant (ms, with neuron.dt).")
    decision_steps: int | None = Field(
        None, gt=0, description="The loss is the readout's cross-entropy averaged over the last this many "
                                "time steps, and the class is read from the readout averaged over them; null: all.")
    learning: Literal["eprop", "bptt"] = Field(
        "eprop", description="eprop: online eligibility traces and a learning signal, no backward pass "
                             "through time; bptt: backpropagation through time with surrogate gradients.")
    feedback: Literal["symmetric", "random"] = Field(
        "symmetric",
        description="eprop: the learning signal's weights: the readout's own (W_out^T) or fixed random ones.")
    rate_target: float = Field(0.01, ge=0, le=1, description="Firing-rate regulariser: target spikes per step.")
    rate_cost: float = Field(0.1, ge=0, description="Firing-rate regulariser weight (0: off).")

    @property
    def kappa(self) -> float:
        return math.exp(-self.neuron.dt / self.readout_tau)

    @property
    def adaptive(self) -> int:
        """How many of the recurrent neurons are ALIF (the last ones)."""
        return round(self.hidden * self.adaptive_fraction)

    @model_validator(mode="after")
    def _check(self) -> LSNNSpec:
        if self.neuron.kind == "lif" and self.adaptive_fraction > 0:
            raise ValueError("neuron kind 'lif' has no adaptation but adaptive_fraction is "
                             f"{self.adaptive_fraction}; for the LIF-only network set adaptive_fraction: 0")
        if not self.neuron.detach_reset:
            raise ValueError("lsnn leaves the reset out of its gradients (e-prop's eligibility traces do): "
                             "neuron.detach_reset must be true")
        return self

    def check_input(self, shape: tuple[int, ...]) -> None:
        steps = (shape[-1] if len(shape) == 2 else shape[-2]) * self.repeat
        if self.decision_steps is not None and self.decision_steps > steps:
            raise ValueError(f"decision_steps {self.decision_steps} is longer than the sequence "
                             f"({steps} time steps)")


class SNNTemporalSpec(Strict):
    """A temporal-coding network (Comsa et al. 2020): every neuron fires at most once, and the
    information is in when. Synapses have an alpha kernel, so a neuron's potential after input
    spikes t_i is V(t) = sum_i w_i (t - t_i) exp(-(t - t_i) / tau_syn), and the time it reaches the
    threshold has a closed form (Lambert W): spike times are exact, and so are their gradients with
    respect to the weights and the input times, except where W0's derivative is clipped
    (`clip_derivative`, near a neuron that barely reaches threshold) and for neurons that stay
    silent: they have no spike time to differentiate and are pushed towards threshold by extra loss
    terms (`fire_cost`, `revive_cost`) instead. Each layer also receives `sync_pulses` spikes whose
    times and weights are learned (they act as biases). The class is the output neuron that fires
    first. Input: latency coding, in continuous time (brighter pixels earlier)."""

    kind: Literal["snn_temporal"]
    encoding: EncodingSpec = EncodingSpec(kind="latency", steps=5, threshold=0.0)
    hidden: list[int] = Field([128], min_length=1, description="Neurons of each hidden layer.")
    tau_syn: float = Field(2.0, gt=0, description="Alpha-kernel time constant, in the encoding's time steps.")
    threshold: float = Field(1.0, gt=0, description="Firing threshold.")
    sync_pulses: int = Field(10, ge=0, description="Learnable synchronisation pulses per layer.")
    pulse_strength: float = Field(
        1.0, ge=0, description="Initial pulse weights: together they peak at this many thresholds (> 1: every "
                               "neuron fires at the start, whatever its input).")
    weight_mean: float = Field(
        2.0, description="Initial mean of the summed input weights of a neuron, in thresholds (pulses apart).")
    clip_derivative: float = Field(
        5.0, gt=0, description="Cap on the Lambert W derivative: spike times of neurons that barely reach the "
                                 "threshold have unbounded gradients (Comsa et al. clip them too).")
    temperature: float = Field(
        0.1, gt=0, description="The loss is the cross-entropy of softmax(-t / temperature) over the output spike "
                               "times t: the smaller, the more a few tenths of a time step between the correct "
                               "output and the others count.")
    time_cost: float = Field(
        0.0, ge=0, description="Weight of the mean squared output spike time (pushes decisions earlier).")
    fire_cost: float = Field(
        10.0, ge=0, description="Weight of the term that raises the drive of a silent correct output.")
    revive_cost: float = Field(
        1.0, ge=0, description="Weight of the term that raises the drive of hidden neurons silent for the whole "
                               "batch (a silent neuron has no spike time, so no gradient of its own).")

    @model_validator(mode="after")
    def _check(self) -> SNNTemporalSpec:
        if self.encoding.kind != "latency":
            raise ValueError(f"encoding {self.encoding.kind!r} makes several spikes per input or none with a time "
                             "of its own; a temporal-coding network reads one spike time per input: use latency")
        if any(h <= 0 for h in self.hidden):
            raise ValueError(f"hidden must all be > 0 (got {self.hidden})")
        return self


class SpikeStatsSpec(Strict):
    """Spikes, firing rates, sparsity, synaptic operations against the MACs of the same-shaped
    non-spiking network, the energy estimate, a spike raster and membrane traces."""

    kind: Literal["spike_stats"] = "spike_stats"
