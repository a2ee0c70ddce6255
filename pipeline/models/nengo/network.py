"""The Nengo side: tuning curves drawn once, the network built from explicit parameters (so that
what it learnt lives in the module's buffers and its weight file), and a `Simulation` that feeds
it inputs and targets step by step and reads its readouts back.

Everything the network is made of is an array: per twin (spiking LIF, rate LIFRate) the first
ensemble's scaled encoders [n, d] (gain folded in, Voja changes them), its biases, the learned
connection's weights and the least-squares readout; for the channel, the output ensemble's
encoders, biases and decoders. Nengo never draws anything itself, so two networks built from
the same arrays are the same network.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.extras import require
from pipeline.models.nengo import NengoSpec

TWINS = ("spiking", "rate")
READOUTS = ("pes", "least_squares")


def nengo():
    return require("nengo", "nengo", "The nengo kind")


def readout_names() -> list[str]:
    return [f"{twin}_{readout}" for twin in TWINS for readout in READOUTS]


@dataclass
class Tuning:
    """An ensemble's tuning curves: scaled encoders [n, d] (unit encoders times gain) and biases
    [n]; its current for input x is scaled_encoders @ x + bias."""

    scaled_encoders: np.ndarray
    gain: np.ndarray
    bias: np.ndarray

    def rates(self, inputs: np.ndarray) -> np.ndarray:
        """Steady-state firing rates [N, n] for inputs [N, d] (LIF and LIFRate share them)."""
        currents = inputs @ self.scaled_encoders.T
        return nengo().LIFRate().rates(currents, np.ones_like(self.bias), self.bias)


def draw_tuning(spec: NengoSpec, dimensions: int, rng: np.random.RandomState,
                data: np.ndarray | None = None) -> Tuning:
    """Nengo's usual random ensemble: max rates and intercepts uniform in the spec's ranges,
    encoders uniform on the sphere or (spec.encoders == "data") the directions of rows of `data`."""
    ng = nengo()
    max_rates = ng.dists.Uniform(*spec.max_rates).sample(spec.neurons, rng=rng)
    intercepts = ng.dists.Uniform(*spec.intercepts).sample(spec.neurons, rng=rng)
    gain, bias = ng.LIF().gain_bias(max_rates, intercepts)
    if spec.encoders == "data" and data is not None:
        rows = data[rng.choice(len(data), spec.neurons, replace=len(data) < spec.neurons)]
        encoders = rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
    else:
        encoders = ng.dists.UniformHypersphere(surface=True).sample(spec.neurons, dimensions, rng=rng)
    return Tuning(encoders * gain[:, None], gain, bias)


def least_squares(tuning: Tuning, inputs: np.ndarray, targets: np.ndarray, reg: float) -> np.ndarray:
    """Decoders [k, n] mapping the ensemble's rates on `inputs` [N, d] to `targets` [N, k]
    (Nengo's LstsqL2: ridge regression with L2 relative to the largest rate)."""
    decoders, _ = nengo().solvers.LstsqL2(reg=reg)(tuning.rates(inputs), targets)
    return decoders.T


class Feed:
    """A Node's output read from an array, one row per simulator step from the step at `start`
    (zeros outside it). Picklable, unlike a closure."""

    def __init__(self, size: int, dt: float):
        self.values = np.zeros((0, size))
        self.start = 0
        self.dt = dt

    def __call__(self, t: float) -> np.ndarray:
        index = int(round(t / self.dt)) - 1 - self.start
        if 0 <= index < len(self.values):
            return self.values[index]
        return np.zeros(self.values.shape[1])


@dataclass
class Arrays:
    """The network's parameters, per twin where they can differ (a leading axis of len(TWINS))."""

    scaled_encoders: np.ndarray  # [T, n, d]
    gain: np.ndarray  # [n]
    bias: np.ndarray  # [n]
    learned: np.ndarray  # [T, out, n]: decoders [k, n], or weights [n_post, n] with bcm/oja
    least_squares: np.ndarray  # [T, k, n]
    post: Tuning | None = None  # the channel's output ensemble
    post_decoders: np.ndarray | None = None  # [d, n_post]


class Simulation:
    """One Nengo simulator over the network built from `arrays`, with its rules when `learning`.
    `run(inputs, targets)` feeds them step by step and returns each readout's output over those
    steps (lowpass-filtered as `readout_synapse` says); the channel's also holds "reference", the
    input through the same synapses, and a raster's "spikes"."""

    def __init__(self, spec: NengoSpec, arrays: Arrays, learning: bool, seed: int, raster: int = 0):
        ng = nengo()
        self.spec, self.learning = spec, learning
        rules = set(spec.rules) if learning else set()
        channel = arrays.post is not None
        dimensions = arrays.scaled_encoders.shape[2]
        outputs = arrays.least_squares.shape[1]
        self.stimulus = Feed(dimensions, spec.dt)
        self.target = Feed(outputs, spec.dt)
        self.probes, self.learned, self.encoders = {}, [], []
        self.spikes = self.reference = None
        with ng.Network(seed=seed) as self.network:
            stimulus = ng.Node(self.stimulus, size_out=dimensions, label="stimulus")
            target = ng.Node(self.target, size_out=outputs, label="target") if learning else None
            for t, twin in enumerate(TWINS):
                neuron_type = ng.LIF() if twin == "spiking" else ng.LIFRate()
                ensemble = self._ensemble(
                    Tuning(arrays.scaled_encoders[t], arrays.gain, arrays.bias), neuron_type, f"{twin}_a")
                into = ng.Connection(stimulus, ensemble, synapse=None,
                                     learning_rule_type=ng.Voja(spec.voja_rate) if "voja" in rules else None)
                self.encoders.append(into)
                if twin == "spiking" and raster:
                    self.spikes = ng.Probe(ensemble.neurons[:raster], "output")
                for readout in READOUTS:
                    name = f"{twin}_{readout}"
                    output = ng.Node(size_in=outputs, label=name)
                    transform = arrays.learned[t] if readout == "pes" else arrays.least_squares[t]
                    if channel:
                        post = self._ensemble(arrays.post, neuron_type, f"{name}_b")
                        weights = readout == "pes" and bool({"bcm", "oja"} & set(spec.rules))
                        connection = ng.Connection(ensemble.neurons, post.neurons if weights else post,
                                                   transform=transform, synapse=spec.synapse)
                        ng.Connection(post.neurons, output, transform=arrays.post_decoders, synapse=spec.synapse)
                    else:
                        connection = ng.Connection(ensemble.neurons, output, transform=transform,
                                                   synapse=spec.synapse)
                    if readout == "pes":
                        self.learned.append(connection)
                        if learning:
                            self._learn(connection, output, target, rules)
                    self.probes[name] = ng.Probe(output, synapse=spec.readout_synapse or None)
            if channel:
                # The input through the synapses a signal crosses on its way out (A -> B, B -> the
                # output node, the readout's lowpass): what a perfect channel of these synapses gives.
                first = ng.Node(size_in=dimensions, label="reference_b")
                second = ng.Node(size_in=dimensions, label="reference_out")
                ng.Connection(stimulus, first, synapse=spec.synapse)
                ng.Connection(first, second, synapse=spec.synapse)
                self.reference = ng.Probe(second, synapse=spec.readout_synapse or None)
        # Unoptimised: Nengo's optimiser merges signals in an order that differs from one build to
        # the next, and a checkpoint's state is matched to the signals by their order (it costs
        # no measurable speed on these networks).
        self.simulator = ng.Simulator(self.network, dt=spec.dt, seed=seed, progress_bar=False, optimize=False)

    @staticmethod
    def _ensemble(tuning: Tuning, neuron_type, label: str):
        ng = nengo()
        return ng.Ensemble(len(tuning.bias), tuning.scaled_encoders.shape[1], neuron_type=neuron_type,
                           encoders=tuning.scaled_encoders / tuning.gain[:, None], gain=tuning.gain,
                           bias=tuning.bias, normalize_encoders=False, label=label)

    def _learn(self, connection, output, target, rules: set[str]) -> None:
        """PES from the error output - target; BCM or Oja beside it on neuron-to-neuron weights."""
        ng = nengo()
        spec = self.spec
        types = {"pes": ng.PES(spec.pes_rate)}
        if "bcm" in rules:
            types["bcm"] = ng.BCM(spec.bcm_rate)
        if "oja" in rules:
            types["oja"] = ng.Oja(spec.oja_rate)
        connection.learning_rule_type = types
        error = ng.Node(size_in=output.size_in, label="error")
        ng.Connection(output, error, synapse=None)
        ng.Connection(target, error, transform=-1, synapse=None)
        ng.Connection(error, connection.learning_rule["pes"], synapse=None)

    def run(self, inputs: np.ndarray, targets: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Feeds inputs [steps, d] (and, learning, targets [steps, k]) from the simulator's current
        step; each readout's output [steps, k]."""
        sim = self.simulator
        self.stimulus.values, self.stimulus.start = inputs, sim.n_steps
        if self.learning:
            self.target.values, self.target.start = targets, sim.n_steps
        sim.run_steps(len(inputs))
        outputs = {name: np.asarray(sim.data[probe]) for name, probe in self.probes.items()}
        for extra, probe in (("spikes", self.spikes), ("reference", self.reference)):
            if probe is not None:
                outputs[extra] = np.asarray(sim.data[probe])
        sim.clear_probes()
        return outputs

    def learned_weights(self) -> np.ndarray:
        """[T, out, n]: the learned connections' weights now."""
        sim = self.simulator
        return np.stack([sim.signals[sim.model.sig[c]["weights"]] for c in self.learned])

    def scaled_encoders(self) -> np.ndarray:
        """[T, n, d]: the first ensembles' scaled encoders now (Voja moves them)."""
        sim = self.simulator
        return np.stack([sim.signals[sim.model.sig[c.post_obj]["encoders"]] for c in self.encoders])

    # --- the simulator's state, for checkpoints ---

    def state(self) -> list[np.ndarray]:
        """Every signal the simulator updates (voltages, refractory times, synapse states, learned
        weights, the step and time), in the build's order: a network built from the same arrays
        and seed has the same signals in the same order."""
        return [np.array(value) for key, value in self.simulator.signals.items() if not key.readonly]

    def restore(self, state: list[np.ndarray]) -> None:
        sim = self.simulator
        keys = [key for key in sim.signals if not key.readonly]
        if [tuple(np.shape(value)) for value in state] != [tuple(key.shape) for key in keys]:
            raise ValueError("the checkpoint's simulator state was written by a different network "
                             f"({len(state)} signals against {len(keys)})")
        for key, value in zip(keys, state, strict=True):
            sim.signals[key] = value
        sim._probe_step_time()  # noqa: SLF001 - n_steps and time follow the step and time signals
