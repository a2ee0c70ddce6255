"""The vokenization figures: captions with the images they retrieve, tokens above their vokens."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from pipeline.plots import save


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
    return save(fig, path, dpi=100)


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
    return save(fig, path, dpi=100)


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width)[:6])
