"""The continual learners' figures: the accuracy matrix of a stream, accuracy against memory."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from pipeline.plots import save


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
    return save(fig, path)


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
    return save(fig, path, format="png", metadata={"Software": None, "Description": note})
