"""What a spiking run measures beyond accuracy: spikes per sample and firing rate per layer,
sparsity, the operations per inference next to those of the same-shaped non-spiking network, an
energy estimate, and pictures (spike raster, membrane trace).

Energy per operation (Horowitz, ISSCC 2014, 45 nm, 32-bit floating point): an add or a compare
0.9 pJ, a multiply 3.7 pJ, a multiply-accumulate 3.7 + 0.9 = 4.6 pJ. Divides and square roots are
priced as one multiply (a lower bound: in hardware they cost several), an exponential as 7
multiplies and 8 adds (range reduction and a degree-5 polynomial, about what a float32 expf does).

Counted for the spiking network (per inference, every term summed over its time steps):
- synaptic operations: an accumulate for each spike arriving at each synapse it drives;
- its own multiply-accumulates: a layer fed an analog input (direct encoding's first layer, once;
  the LSNN's input current, every step), and the temporal network's closed form (two per input
  spike and neuron it reaches);
- neuron updates, which the non-spiking network does not have: per neuron and time step the leak
  multiply, the add that brings the step's input current (bias included) into the membrane and
  the threshold compare; per spike the reset's subtraction; ALIF adds the adaptation's decay
  multiply and the add forming the threshold per step, and an add per spike; a refractory period
  a compare and a decrement per step; a leaky readout a multiply and an add per output and step,
  plus an add per step it is averaged over. Constant factors ((1 - alpha), beta (1 - rho)) are
  taken as folded into the weights. No family here filters its synaptic currents over time (the
  temporal network's alpha synapses are in its closed form). The temporal network's own rules
  (exponentials, the search for the crossing, the Lambert W) are in `temporal.py`.
Counted for the same-shaped non-spiking network (ReLU, one pass; a recurrent one once per time
step): its multiply-accumulates, and per neuron a bias add and the activation's compare (the
readout: the bias add only).
Left out of both: memory traffic (reading weights and state, usually the larger part of the
energy), max pooling, the input encoding (drawing rate-coded spikes, computing latencies), the
final argmax, and training. The ratio, not the absolute figure, is the meaningful part. The
pictures are drawn by `pipeline.plots` (raster, membrane_trace).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

ENERGY_AC_PJ = 0.9
"""An add, subtract or compare (and an accumulate: what a spike arriving at a synapse costs)."""
ENERGY_MULT_PJ = 3.7
"""A multiply (a divide or square root priced the same)."""
ENERGY_MAC_PJ = ENERGY_MULT_PJ + ENERGY_AC_PJ
EXP_MULTS, EXP_ADDS = 7, 8
"""An exponential: range reduction (2 multiplies, 3 adds with the rounding and the exponent's
scaling) and a degree-5 polynomial by Horner's rule (5 multiplies, 5 adds)."""


@dataclass
class LayerCount:
    name: str
    neurons: int
    spikes: float
    """Per sample, summed over time."""
    synaptic_ops: float
    """Per sample: each spike arriving at the layer's inputs times the synapses it drives (accumulates)."""
    macs: int
    """Of the same layer in a non-spiking network, one pass."""
    analog_macs: float = 0.0
    """Per sample: multiply-accumulates the spiking network itself spends (on a non-spike input: the
    first layer under direct encoding, its constant current computed once; in the temporal
    network's closed form)."""
    neuron_mults: float = 0.0
    """Per sample: multiplies of the neuron (and readout) state updates, summed over time."""
    neuron_adds: float = 0.0
    """Per sample: adds and compares of the neuron (and readout) state updates, summed over time."""
    ann_neuron_ops: int = 0
    """Of the same layer in a non-spiking network, one pass: adds and compares beyond its MACs (a
    bias add and a ReLU compare per neuron; a readout's bias add)."""


def neuron_updates(neuron_steps: float, spikes: float, adaptive: bool = False, refractory: bool = False
                   ) -> tuple[float, float]:
    """(multiplies, adds and compares) of LIF/ALIF neurons (`neurons.NeuronCell`) over
    `neuron_steps` neurons x time steps that fired `spikes` times:
        v <- alpha v + I - z v_th: a multiply and an add per step, a subtraction per spike
        z = H(v - A): a compare per step
        ALIF, with beta folded into b: A = v_th + b (an add per step), b <- rho b + beta (1 - rho) z
        (a multiply per step, an add per spike)
        refractory: a test and a decrement of the counter per step."""
    mults, adds = neuron_steps, 2 * neuron_steps + spikes
    if adaptive:
        mults, adds = mults + neuron_steps, adds + neuron_steps + spikes
    if refractory:
        adds += 2 * neuron_steps
    return mults, adds


def readout_updates(output_steps: float, averaged_steps: float) -> tuple[float, float]:
    """(multiplies, adds) of a leaky-integrator readout y <- kappa y + W z + b over `output_steps`
    outputs x time steps (a multiply and an add each; W z is counted as synaptic operations), read
    out as its average over `averaged_steps` outputs x time steps (an add each)."""
    return output_steps, output_steps + averaged_steps


@dataclass
class SpikeBatch:
    """What a spiking family's `spike_batch(inputs, keep_first)` returns for one batch."""

    predictions: torch.Tensor
    """Predicted labels [B] (-1 where the network does not decide)."""
    counts: list[LayerCount]
    """Totals over the batch."""
    first: object = None
    """With keep_first: what the family's `spike_pictures` draws of the batch's first example."""
    steps: int = 1
    """Time steps a neuron has to fire in (firing rate = spikes / (neurons x steps))."""
    extras: dict[str, tuple[float, float]] = field(default_factory=dict)
    """Further figures as (numerator, denominator) totals over the batch, divided at the end."""


_SUMMED = ("spikes", "synaptic_ops", "analog_macs", "neuron_mults", "neuron_adds")
"""What a batch adds to the totals (`macs` and `ann_neuron_ops` are per sample already)."""


def accumulate(totals: list[LayerCount] | None, batch: list[LayerCount]) -> list[LayerCount]:
    """Add one batch's totals to the running ones (the first batch starts them)."""
    if totals is None:
        return batch
    for total, layer in zip(totals, batch, strict=True):
        for name in _SUMMED:
            setattr(total, name, getattr(total, name) + getattr(layer, name))
    return totals


def per_sample(totals: list[LayerCount], samples: int) -> list[LayerCount]:
    """Totals over `samples` examples -> per example (in place)."""
    for layer in totals:
        for name in _SUMMED:
            setattr(layer, name, getattr(layer, name) / samples)
    return totals


def summarise(layers: list[LayerCount], steps: int) -> dict[str, float]:
    out: dict[str, float] = {}
    total_spikes = total_neurons = 0.0
    for layer in layers:
        if layer.neurons:
            out[f"spikes_per_sample/{layer.name}"] = layer.spikes
            out[f"firing_rate/{layer.name}"] = layer.spikes / (layer.neurons * steps)
            total_spikes += layer.spikes
            total_neurons += layer.neurons
    sops = sum(layer.synaptic_ops for layer in layers)
    analog = sum(layer.analog_macs for layer in layers)
    mults = sum(layer.neuron_mults for layer in layers)
    adds = sum(layer.neuron_adds for layer in layers)
    macs = sum(layer.macs for layer in layers)
    ann_ops = sum(layer.ann_neuron_ops for layer in layers)
    synaptic_nj = (sops * ENERGY_AC_PJ + analog * ENERGY_MAC_PJ) / 1000
    neuron_nj = (mults * ENERGY_MULT_PJ + adds * ENERGY_AC_PJ) / 1000
    ann_mac_nj = macs * ENERGY_MAC_PJ / 1000
    out.update({
        "spikes_per_sample": total_spikes,
        "sparsity": 1 - total_spikes / (total_neurons * steps) if total_neurons else 1.0,
        "synaptic_ops_per_sample": sops,
        "snn_macs_per_sample": analog,
        "neuron_update_mults_per_sample": mults,
        "neuron_update_adds_per_sample": adds,
        "neuron_update_ops_per_sample": mults + adds,
        "ann_macs_per_sample": float(macs),
        "ann_neuron_ops_per_sample": float(ann_ops),
        "energy_snn_synaptic_nj": synaptic_nj,
        "energy_snn_neuron_nj": neuron_nj,
        "energy_snn_nj": synaptic_nj + neuron_nj,
        "energy_ann_nj": ann_mac_nj + ann_ops * ENERGY_AC_PJ / 1000,
    })
    snn = out["energy_snn_nj"]
    out["energy_ratio_ann_over_snn"] = out["energy_ann_nj"] / snn if snn else float("inf")
    # The figure before neuron updates were counted: the MACs alone against the synaptic part alone.
    out["energy_ratio_synaptic_only"] = ann_mac_nj / synaptic_nj if synaptic_nj else float("inf")
    return out
