"""What a spiking run measures beyond accuracy: spikes per sample and firing rate per layer,
sparsity, synaptic operations per inference next to the multiply-accumulates of the same-shaped
non-spiking network, an energy estimate, and pictures (spike raster, membrane trace).

Energy per operation (Horowitz, ISSCC 2014, 45 nm, 32-bit floating point): an accumulate, what a
spike arriving at a synapse costs, 0.9 pJ; a multiply-accumulate, what each connection of a
conventional network costs, 3.7 + 0.9 = 4.6 pJ. Memory access and the neuron updates are left out
of both, so the ratio, not the absolute figure, is the meaningful part.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

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


def raster(spikes: torch.Tensor, title: str, path: Path, input_spikes: torch.Tensor | None = None) -> Path:
    """Spikes [T, N] of one sample as dots (time x neuron); the input's beside them if given."""
    panels = [("input", input_spikes), ("layer", spikes)] if input_spikes is not None else [("layer", spikes)]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    for ax, (name, data) in zip(axes[0], panels, strict=True):
        t, n = torch.nonzero(data.flatten(1), as_tuple=True)
        ax.scatter(t.numpy(), n.numpy(), s=2, marker="|", color="black")
        ax.set_xlabel("time step")
        ax.set_ylabel("neuron")
        ax.set_xlim(-0.5, data.shape[0] - 0.5)
        ax.set_title(f"{name}: {int(data.sum())} spikes", fontsize=9)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def membrane_trace(potentials: torch.Tensor, spikes: torch.Tensor, threshold: float | torch.Tensor, title: str,
                   path: Path) -> Path:
    """Membrane potentials [T, K] of a few neurons with their spikes and the threshold (one line,
    or each neuron's own [T, K] dashed in its colour where it adapts)."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    steps = torch.arange(potentials.shape[0]).numpy()
    for k in range(potentials.shape[1]):
        line = ax.plot(steps, potentials[:, k].numpy(), marker=".", label=f"neuron {k}")[0]
        fired = torch.nonzero(spikes[:, k]).flatten().numpy()
        ax.scatter(fired, potentials[fired, k].numpy(), marker="*", s=80, color=line.get_color())
        if isinstance(threshold, torch.Tensor):
            ax.plot(steps, threshold[:, k].numpy(), linestyle="--", linewidth=0.8, color=line.get_color())
    if not isinstance(threshold, torch.Tensor):
        ax.axhline(threshold, color="grey", linestyle="--", label="threshold")
    ax.set_xlabel("time step")
    ax.set_ylabel("membrane potential")
    ax.legend(fontsize=7, ncol=3)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
