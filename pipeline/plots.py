"""Generic figures saved as PNG (matplotlib, Agg backend) and logged as artifacts: confusion
matrices, embeddings, curves, frame strips, bars. A family draws its own figures in its folder
with `save`, the one way a figure is written here."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def save(fig, path: Path, dpi: int = 110, **options) -> Path:
    """Lay the figure out, write it as PNG and close it (a figure left open holds its memory)."""
    fig.tight_layout()
    fig.savefig(path, dpi=dpi, **options)
    plt.close(fig)
    return path


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
    return save(fig, path)


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
    return save(fig, path, dpi=100)


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
    return save(fig, path)


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
    return save(fig, path)


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
    return save(fig, path)


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
    return save(fig, path)


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
    return save(fig, path)


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
    return save(fig, path)
