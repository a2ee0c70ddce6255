"""The spiking networks' figures: spike rasters, membrane traces, spike times."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import torch

from pipeline.plots import save


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
    return save(fig, path)


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
    return save(fig, path)


def spike_times(times: list[torch.Tensor], names: list[str], title: str, path: Path) -> Path:
    """One example's spike times per layer (inf: silent), a panel per layer."""
    fig, axes = plt.subplots(1, len(times), figsize=(3.2 * len(times), 3.6), sharex=True)
    for ax, name, layer_times in zip(axes, names, times, strict=True):
        fired = torch.isfinite(layer_times)
        ax.scatter(layer_times[fired].numpy(), torch.nonzero(fired).flatten().numpy(), s=3, marker="|",
                   color="black")
        ax.set_title(f"{name}: {int(fired.sum())} of {layer_times.numel()} fire", fontsize=9)
        ax.set_xlabel("time (steps)")
    axes[0].set_ylabel("neuron")
    fig.suptitle(title)
    return save(fig, path)


def potentials_to_spikes(grid: torch.Tensor, potentials: torch.Tensor, spikes: torch.Tensor, threshold: float,
                         names: tuple[str, ...], title: str, path: Path) -> Path:
    """Potentials [T, K] over a time grid, each curve up to its neuron's spike time (a star on the
    threshold, where the closed-form spike time puts it)."""
    import math

    fig, ax = plt.subplots(figsize=(8.5, 3.8))
    for k in range(potentials.shape[1]):
        spike = float(spikes[k])
        shown = grid <= spike if math.isfinite(spike) else torch.ones_like(grid, dtype=torch.bool)
        x, y = grid[shown].tolist(), potentials[shown, k].tolist()
        if math.isfinite(spike):  # the curve ends where it meets the threshold, at the spike
            x, y = [*x, spike], [*y, threshold]
        line = ax.plot(x, y, label=names[k], linewidth=1)[0]
        if math.isfinite(spike):
            ax.scatter([spike], [threshold], marker="*", s=80, color=line.get_color())
    ax.axhline(threshold, color="grey", linestyle="--")
    ax.set_xlabel("time (steps)")
    ax.set_ylabel("membrane potential")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))  # clear of the spikes
    ax.set_title(title, fontsize=10)
    return save(fig, path)
