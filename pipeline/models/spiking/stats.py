"""What a spiking run measures beyond accuracy: spikes per sample and firing rate per layer,
sparsity, synaptic operations per inference next to the multiply-accumulates of the same-shaped
non-spiking network, an energy estimate, and pictures (spike raster, membrane trace).

Energy per operation (Horowitz, ISSCC 2014, 45 nm, 32-bit floating point): an accumulate, what a
spike arriving at a synapse costs, 0.9 pJ; a multiply-accumulate, what each connection of a
conventional network costs, 3.7 + 0.9 = 4.6 pJ. Memory access and the neuron updates are left out
of both, so the ratio, not the absolute figure, is the meaningful part. The pictures are drawn by
`pipeline.plots` (raster, membrane_trace).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

ENERGY_AC_PJ = 0.9
ENERGY_MAC_PJ = 4.6


@dataclass
class LayerCount:
    name: str
    neurons: int
    spikes: float
    """Per sample, summed over time."""
    synaptic_ops: float
    """Per sample: each spike arriving at the layer's inputs times the synapses it drives."""
    macs: int
    """Of the same layer in a non-spiking network, one pass."""
    analog_macs: float = 0.0
    """Per sample: multiply-accumulates the spiking network itself spends on a non-spike input
    (the first layer under direct encoding; its constant current is computed once)."""


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


def accumulate(totals: list[LayerCount] | None, batch: list[LayerCount]) -> list[LayerCount]:
    """Add one batch's totals to the running ones (the first batch starts them)."""
    if totals is None:
        return batch
    for total, layer in zip(totals, batch, strict=True):
        total.spikes += layer.spikes
        total.synaptic_ops += layer.synaptic_ops
        total.analog_macs += layer.analog_macs
    return totals


def per_sample(totals: list[LayerCount], samples: int) -> list[LayerCount]:
    """Totals over `samples` examples -> per example (in place)."""
    for layer in totals:
        layer.spikes /= samples
        layer.synaptic_ops /= samples
        layer.analog_macs /= samples
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
    macs = sum(layer.macs for layer in layers)
    out.update({
        "spikes_per_sample": total_spikes,
        "sparsity": 1 - total_spikes / (total_neurons * steps) if total_neurons else 1.0,
        "synaptic_ops_per_sample": sops,
        "snn_macs_per_sample": analog,
        "ann_macs_per_sample": float(macs),
        "energy_snn_nj": (sops * ENERGY_AC_PJ + analog * ENERGY_MAC_PJ) / 1000,
        "energy_ann_nj": macs * ENERGY_MAC_PJ / 1000,
    })
    out["energy_ratio_ann_over_snn"] = out["energy_ann_nj"] / out["energy_snn_nj"] if sops or analog else float("inf")
    return out
