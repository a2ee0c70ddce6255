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
    sequences; an image is read row by row), on and off changes in separate channels."""

    kind: Literal["rate", "latency", "delta"] = "rate"
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
