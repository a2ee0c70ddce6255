"""Neural Engineering Framework networks run on Nengo's reference (numpy) simulator inside the
training stage: LIF ensembles whose connections learn online by PES (supervised, from an error
signal), BCM or Oja (unsupervised, on neuron-to-neuron weights) and Voja (an ensemble's encoders
moving towards its inputs). The spec, pure pydantic; `network.py` builds the Nengo network,
`module.py` trains it as a Lightning module.

Two networks, chosen by the data:

- a series (`white_signal`): the communication channel. Ensemble A represents the input signal,
  a learned connection carries it to ensemble B, and B's decoded value should equal the input.
  PES learns the A -> B decoders from the error B - input (with BCM or Oja, the connection is
  neuron-to-neuron weights, and those rules act on it too).
- images: a classifier. Each image, projected on its first principal components (fitted on the
  training split), is presented for `present_seconds` to one ensemble; PES learns a readout from
  its neurons to the ten class scores, from the error readout - one-hot label.

Each network is built twice in one simulator, from the same tuning curves: with spiking LIF
neurons and with LIFRate (rate) neurons; each copy has two readouts, the PES-learned one (starting
from zero) and one solved by least squares (regularised, Nengo's LstsqL2) on the training inputs.
The four are scored the same way in the same run: the spiking PES readout is the headline, the
other three its baselines.

Nengo is GPL-licensed: it is the `nengo` extra (`pip install 'pipeline[nengo]'`), imported only
by the code that simulates, never by this module or the plugin's entry.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import Field, model_validator

from pipeline.spec.components import Strict

Rule = Literal["pes", "bcm", "oja", "voja"]


class NengoSpec(Strict):
    """An NEF network learning online in Nengo's simulator; see the module's docstring."""

    kind: Literal["nengo"]
    neurons: int = Field(100, gt=0, description="LIF neurons per ensemble.")
    max_rates: tuple[float, float] = Field(
        (200.0, 400.0), description="Each neuron's firing rate at its preferred input, uniform in [low, high] Hz.")
    intercepts: tuple[float, float] = Field(
        (-1.0, 0.9), description="Where along its encoder each neuron starts firing, uniform in [low, high] "
                                 "(inputs are scaled into the unit ball).")
    encoders: Literal["hypersphere", "data"] = Field(
        "hypersphere", description="Preferred directions: uniform on the unit sphere, or the directions of "
                                   "training inputs picked at random (images).")
    pca_components: int = Field(
        50, gt=0, description="Images: the principal components (of the training split) each image is projected "
                              "on before the ensemble reads it.")
    rules: list[Rule] = Field(
        ["pes"], min_length=1,
        description="The learning rules: pes (the readout, from its error; always there), bcm or oja (with pes, "
                    "on the channel's neuron-to-neuron weights), voja (the first ensemble's encoders).")
    pes_rate: float = Field(1e-4, gt=0, description="PES's learning rate (Nengo's scaling: divided by the neurons).")
    bcm_rate: float = Field(1e-9, gt=0, description="BCM's learning rate.")
    oja_rate: float = Field(1e-6, gt=0, description="Oja's learning rate (its forgetting beta is 1).")
    voja_rate: float = Field(1e-2, gt=0, description="Voja's learning rate.")
    synapse: float = Field(0.005, ge=0, description="The time constant (s) of every connection's lowpass synapse.")
    readout_synapse: float = Field(
        0.01, ge=0, description="The lowpass (s) on the outputs where they are read and scored.")
    present_seconds: float = Field(
        0.05, gt=0, description="Images: how long each is shown; the decision is the mean readout over the "
                                "second half of it.")
    solver_reg: float = Field(0.1, gt=0, description="The least-squares readouts' L2 (relative to the largest rate).")
    eval_points: int = Field(
        5000, gt=0, description="Training inputs the least-squares readouts are solved on (and the channel's "
                                "output ensemble decoded with).")
    dt: float = Field(0.001, gt=0, description="The simulator's time step (s); a series' steps are this far apart.")

    @model_validator(mode="after")
    def _rules(self) -> NengoSpec:
        if "pes" not in self.rules:
            raise ValueError("rules must include pes: the readouts learn from their error by PES (bcm, oja and voja "
                             "are added to it)")
        if len(set(self.rules)) != len(self.rules):
            raise ValueError(f"rules lists one twice: {self.rules}")
        if "bcm" in self.rules and "oja" in self.rules:
            raise ValueError("rules: bcm and oja both act on the same weights; choose one")
        for name in ("max_rates", "intercepts"):
            low, high = getattr(self, name)
            if not low < high:
                raise ValueError(f"{name} must be [low, high] with low < high, got [{low}, {high}]")
        return self

    def check_input(self, shape: tuple[int, ...]) -> None:
        """What each network needs of its data: the weight rules need the channel's post ensemble
        (a series' windows are [channels, steps]; images [channels, height, width])."""
        if len(shape) != 2 and {"bcm", "oja"} & set(self.rules):
            raise ValueError("bcm and oja learn neuron-to-neuron weights, which only the channel (series data) has: "
                             "the classifier's readout goes to a node")


@runtime_checkable
class NefNetwork(Protocol):
    """A trained NEF network simulated with learning off: `simulate(inputs, labels)` -> (each
    readout's score, its outputs or decisions), and `spike_raster(inputs, neurons)` -> the first
    neurons' spikes [steps, neurons] while it reads the inputs."""

    def simulate(self, inputs: Any, labels: Any = None, chunk: int = 200) -> Any: ...

    def spike_raster(self, inputs: Any, neurons: int) -> Any: ...


class NengoReadoutSpec(Strict):
    """Scores every readout of a `nengo` network on the test (and validation) split with learning
    off, the same way: the channel's RMSE against its input over the whole test signal, or the
    classifier's accuracy (each image held for `present_seconds`). Headline: the spiking network's
    PES-learned readout, beside the same network's least-squares readout and both readouts of its
    rate-neuron twin (and, for the channel, a silent output). Figures: the decoded signals against
    the input, or the confusion matrix; a spike raster."""

    kind: Literal["nengo_readout"] = "nengo_readout"
    plot_seconds: float = Field(2.0, gt=0, description="Channel: the stretch of test signal drawn.")
    raster_neurons: int = Field(40, ge=0, description="Neurons of the spiking ensemble in the raster (0: none).")
