"""Figures saved as PNG (matplotlib, Agg backend) and logged as artifacts."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402


def confusion_matrix(true: np.ndarray, predicted: np.ndarray, classes: tuple[str, ...],
                     title: str, path: Path) -> Path:
    n = len(classes)
    matrix = np.zeros((n, n), dtype=np.int64)
    np.add.at(matrix, (true, predicted), 1)
    rates = matrix / matrix.sum(axis=1, keepdims=True).clip(min=1)
    fig, ax = plt.subplots(figsize=(7, 6))
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{rates[i, j]:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if rates[i, j] > 0.5 else "black")
    ax.set_xticks(range(n), classes, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n), classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def embeddings(panels: dict[str, np.ndarray], labels: np.ndarray, classes: tuple[str, ...],
               title: str, path: Path) -> Path:
    """Side-by-side 2-D scatters of embedded points (one panel per feature set), coloured by
    class."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 5), squeeze=False)
    cmap = plt.get_cmap("tab10")
    for ax, (name, points) in zip(axes[0], panels.items(), strict=True):
        for index, class_name in enumerate(classes):
            chosen = labels == index
            ax.scatter(points[chosen, 0], points[chosen, 1], s=3, color=cmap(index % 10),
                       label=class_name)
        ax.set_title(name, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][-1].legend(markerscale=4, fontsize=7, loc="center left", bbox_to_anchor=(1, 0.5))
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def curves(series: dict[str, list[tuple[int, float]]], title: str, xlabel: str, path: Path) -> Path:
    """One panel per metric, each a line over steps."""
    fig, axes = plt.subplots(1, len(series), figsize=(4.5 * len(series), 3.5), squeeze=False)
    for ax, (name, points) in zip(axes[0], series.items(), strict=True):
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, marker="o" if len(points) < 30 else None)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_curves_csv(series: dict[str, list[tuple[int, float]]], folder: Path) -> list[Path]:
    """Each metric's history as folder/<metric>.csv (columns step, value), the shape `dvc plots
    show` reads; the folder is replaced as a whole, so no curve of an earlier run lingers."""
    import shutil

    from pipeline.fsutil import write_atomic

    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, points in series.items():
        text = "step,value\n" + "".join(f"{step},{value!r}\n" for step, value in points)
        written.append(write_atomic(folder / f"{name.replace('/', '_')}.csv", lambda tmp, t=text: tmp.write_text(t)))
    return written


def lines(series: dict[str, list[tuple[float, float]]], title: str, xlabel: str, ylabel: str, path: Path,
          log_x: bool = False) -> Path:
    """Several named lines on one set of axes (e.g. accuracy against the share of labels)."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name, points in series.items():
        xs, ys = zip(*points, strict=True)
        ax.plot(xs, ys, marker="o", label=name)
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def free_running(trials: list[tuple[int, dict[str, tuple[np.ndarray, np.ndarray]]]], title: str,
                 path: Path) -> Path:
    """Forecasts that run free, one panel per trial (t0, {name: (steps, values)}): the first line
    the true series (from before t0, what the forecasters read), the others their forecasts from
    t0 on, dashed; a dotted line marks t0, where they start feeding their own predictions back."""
    fig, axes = plt.subplots(len(trials), 1, figsize=(8, 2.4 * len(trials)), squeeze=False)
    for ax, (start, series) in zip(axes[:, 0], trials, strict=True):
        for index, (name, (steps, values)) in enumerate(series.items()):
            ax.plot(steps, values, label=name, linewidth=1.6 if index == 0 else 1,
                    color="black" if index == 0 else None, linestyle="-" if index == 0 else "--")
        ax.axvline(start, color="grey", linestyle=":", linewidth=1)
        ax.set_ylabel("value")
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8, ncol=len(trials[0][1]), loc="lower left", bbox_to_anchor=(0, 1))  # above the data
    axes[-1, 0].set_xlabel("time step of the test series")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---------------------------------------------------------------- spiking networks


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
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


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
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---------------------------------------------------------------- videos


def line_panels(panels: dict[str, dict[str, list[tuple[float, float]]]], title: str, xlabel: str,
                path: Path) -> Path:
    """One panel per metric, each with several named lines (e.g. a model and its baseline over
    the frames of a video); whole-number ticks where every x is one."""
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.8), squeeze=False)
    for ax, (name, series) in zip(axes[0], panels.items(), strict=True):
        for label, points in series.items():
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, marker="o" if len(points) < 30 else None, markersize=3, label=label)
            if all(float(x).is_integer() for x in xs):
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(name, fontsize=10)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _frame(image: np.ndarray) -> np.ndarray:
    """A frame [C, H, W] as imshow takes it, clipped to [0, 1]: grey for one channel, RGB for
    three, the channels' mean otherwise."""
    if image.shape[0] == 3:
        image = image.transpose(1, 2, 0)
    else:
        image = image[0] if image.shape[0] == 1 else image.mean(axis=0)
    return np.clip(image, 0, 1)


def frame_strip(true: np.ndarray, predicted: np.ndarray, first: int, title: str, path: Path) -> Path:
    """One video's frames [T, C, H, W] (intensities in [0, 1]) as three rows, one column per frame:
    the true frames, the predicted ones and their absolute error (averaged over channels; black 0,
    bright 1). Columns before `first` show the true frame only (read, not predicted)."""
    import textwrap

    steps = len(true)
    error = np.abs(predicted - true).mean(axis=1, keepdims=True)
    width = 0.85 * steps + 0.9
    fig, axes = plt.subplots(3, steps, figsize=(width, 3.3), squeeze=False)
    for row, (name, frames) in enumerate((("true", true), ("predicted", predicted), ("|error|", error))):
        for t in range(steps):
            ax = axes[row, t]
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0 or t >= first:
                ax.imshow(_frame(frames[t]), cmap="gray" if row < 2 else "inferno", vmin=0, vmax=1)
            else:
                for spine in ax.spines.values():
                    spine.set_visible(False)
        axes[row, 0].set_ylabel(name, fontsize=8)
    for t in range(steps):
        axes[0, t].set_title(str(t), fontsize=7, color="black" if t >= first else "grey")
    fig.suptitle(textwrap.fill(title, int(width * 13)), fontsize=9)  # about 13 characters an inch at 9 pt
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def grouped_bars(groups: dict[str, list[float]], categories: tuple[str, ...], title: str, ylabel: str,
                 path: Path) -> Path:
    """One bar per category for each named group, the groups side by side (e.g. per-class
    recall of several feature sets): fractions, on an axis from 0 to 1."""
    fig, ax = plt.subplots(figsize=(max(6.5, 0.3 * len(categories) * max(len(groups), 1) + 1.5), 4))
    width = 0.8 / max(len(groups), 1)
    positions = np.arange(len(categories))
    for index, (name, values) in enumerate(groups.items()):
        ax.bar(positions + (index - (len(groups) - 1) / 2) * width, values, width, label=name)
    ax.set_xticks(positions, categories, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1.15)  # room for the legend above the bars
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8, ncol=max(len(groups), 1), loc="upper center")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def accuracy_matrix(matrix: np.ndarray, row_names: list[str], column_names: list[str], title: str,
                    path: Path) -> Path:
    """A continual learner's accuracy matrix: row i after training on experiences 0..i, column j
    the accuracy on experience j; the cells above the diagonal are experiences not yet seen."""
    rows, columns = matrix.shape
    fig, ax = plt.subplots(figsize=(1.1 * columns + 2.2, 0.8 * rows + 1.8))
    image = ax.imshow(matrix, cmap="viridis", vmin=0, vmax=1)
    for i in range(rows):
        for j in range(columns):
            if np.isfinite(matrix[i, j]):
                ax.text(j, i, f"{100 * matrix[i, j]:.0f}", ha="center", va="center", fontsize=8,
                        color="black" if matrix[i, j] > 0.6 else "white")
    ax.set_xticks(range(columns), column_names, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(rows), row_names, fontsize=8)
    ax.set_xlabel("accuracy on experience (its classes)")
    ax.set_ylabel("after training on")
    ax.set_title(title, fontsize=10)
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def retrieved_images(captions: list[str], images: np.ndarray, queries: list[int], retrieved: list[list[int]],
                     title: str, path: Path) -> Path:
    """One row per caption: its text, then the images it retrieves, best first (uint8
    [rows, k, 1, H, W]); the query's own image, where retrieved, framed in green."""
    rows, k = images.shape[:2]
    fig, axes = plt.subplots(rows, k, figsize=(1.6 * k + 3.2, 1.7 * rows), squeeze=False)
    for row in range(rows):
        for col in range(k):
            ax = axes[row, col]
            ax.imshow(images[row, col, 0], cmap="gray", vmin=0, vmax=255)
            ax.set_xticks([])
            ax.set_yticks([])
            hit = retrieved[row][col] == queries[row]
            for spine in ax.spines.values():
                spine.set_color("limegreen" if hit else "none")
                spine.set_linewidth(3)
        axes[row, 0].set_ylabel(_wrap(captions[row], 28), rotation=0, ha="right", va="center", fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def voken_strips(sentences: list[list[str]], images: list[np.ndarray], title: str, path: Path) -> Path:
    """One row per sentence: each token above the image of its voken (uint8 [tokens, 1, H, W])."""
    width = max(len(words) for words in sentences)
    fig, axes = plt.subplots(len(sentences), width, figsize=(1.1 * width, 1.35 * len(sentences)), squeeze=False)
    for row, (words, pictures) in enumerate(zip(sentences, images, strict=True)):
        for col in range(width):
            ax = axes[row, col]
            ax.axis("off")
            if col < len(words):
                ax.imshow(pictures[col, 0], cmap="gray", vmin=0, vmax=255)
                ax.set_title(words[col], fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width)[:6])


def accuracy_by_memory(panels: dict[str, dict], title: str, path: Path, note: str | None = None) -> Path:
    """One panel per scenario: each learner's accuracy (mean, bars of one standard deviation)
    against the bytes it keeps (log scale), one line per strategy and network, points labelled
    with what they keep; `references` (e.g. the bounds, which keep nothing) as dashed lines.
    `panels`: name -> {"series": {label: [(bytes, mean, std, note)]}, "references": {label: mean}};
    `note` is kept as the PNG's Description."""
    columns = min(2, len(panels))
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(9.5 * columns, 4.6 * rows), squeeze=False)
    for ax, (name, panel) in zip(axes.flat, panels.items(), strict=False):
        for label, points in panel["series"].items():
            xs, means, stds, notes = zip(*sorted(points), strict=True)
            line = ax.errorbar(xs, means, yerr=stds, marker="o", markersize=4, capsize=3, label=label)
            for x, y, kept in zip(xs, means, notes, strict=True):
                ax.annotate(kept, (x, y), textcoords="offset points", xytext=(4, -10), fontsize=6,
                            color=line[0].get_color())
        for number, (label, value) in enumerate(panel["references"].items()):
            ax.axhline(value, linestyle=("--", ":", "-.")[number % 3], linewidth=1, color="black", label=label)
        ax.set_xscale("log")
        ax.set_ylim(0, 1)
        ax.set_xlabel("memory kept (bytes)")
        ax.set_ylabel("average accuracy after the last experience")
        ax.set_title(name, fontsize=10)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png", metadata={"Software": None, "Description": note})
    plt.close(fig)
    return path
