"""Moving Fashion-MNIST: two Fashion-MNIST items gliding over a black canvas at constant velocity,
bouncing off its edges, composited by maximum (the Moving MNIST recipe, Srivastava et al. 2015,
with Fashion-MNIST items). Made by code from Fashion-MNIST, seeded, so the fetch stage checks what
it writes against the registry's sha256s like any downloaded file.

Training sequences take their items from Fashion-MNIST's training split, test sequences from its
test split: no item is seen in both. Each sequence keeps its items' classes (`labels`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.data.fashion_mnist import CLASSES, load_split
from pipeline.data.registry import Readout
from pipeline.errors import PipelineError

FILES = ("x_train.npy", "y_train.npy", "x_test.npy", "y_test.npy")
FRAMES = 20
ITEMS = 2
SEEDS = {"train": 23, "test": 24}
"""One generator per split, so each split's sequences depend only on its own seed."""


@dataclass(frozen=True)
class Canvas:
    """One variant of the dataset: the canvas side, the items' side on it, their speed range
    (pixels per frame) and how many sequences each split holds."""

    size: int
    item: int
    speed: tuple[float, float]
    train: int
    test: int


CANVASES = {
    "moving_fmnist": Canvas(size=64, item=28, speed=(2.0, 4.0), train=3000, test=500),
    "moving_fmnist_32": Canvas(size=32, item=14, speed=(1.0, 2.0), train=3000, test=500),
}


def shrink(images: np.ndarray, side: int) -> np.ndarray:
    """uint8 [N, 28, 28] images average-pooled to [N, side, side] (side must divide 28)."""
    if side == images.shape[1]:
        return images
    factor = images.shape[1] // side
    if factor * side != images.shape[1]:
        raise ValueError(f"item side {side} must divide {images.shape[1]}")
    pooled = images.reshape(len(images), side, factor, side, factor).astype(np.float32).mean(axis=(2, 4))
    return np.rint(pooled).astype(np.uint8)


def trajectories(count: int, canvas: Canvas, rng: np.random.Generator) -> np.ndarray:
    """Top-left corners int64 [count, ITEMS, FRAMES, 2] (row, column): each item starts at a
    uniform position with a uniform direction and a speed in `canvas.speed`, moves in a straight
    line and is reflected at the edges (the position mirrored back inside, that velocity component
    negated)."""
    span = canvas.size - canvas.item
    position = rng.uniform(0, span, size=(count, ITEMS, 2))
    angle = rng.uniform(0, 2 * np.pi, size=(count, ITEMS))
    speed = rng.uniform(*canvas.speed, size=(count, ITEMS))
    velocity = np.stack([np.sin(angle), np.cos(angle)], axis=-1) * speed[..., None]
    corners = np.empty((count, ITEMS, FRAMES, 2), dtype=np.int64)
    for t in range(FRAMES):
        corners[:, :, t] = np.rint(position).astype(np.int64)
        position = position + velocity
        low, high = position < 0, position > span
        position = np.where(low, -position, np.where(high, 2 * span - position, position))
        velocity = np.where(low | high, -velocity, velocity)
    return corners


def compose(items: np.ndarray, corners: np.ndarray, size: int) -> np.ndarray:
    """uint8 [count, FRAMES, 1, size, size]: each item [count, ITEMS, side, side] pasted at its
    corners [count, ITEMS, FRAMES, 2], overlapping items combined by their maximum."""
    count, _, side, _ = items.shape
    videos = np.zeros((count, FRAMES, 1, size, size), dtype=np.uint8)
    for n in range(count):
        for k in range(ITEMS):
            for t in range(FRAMES):
                row, col = corners[n, k, t]
                window = videos[n, t, 0, row:row + side, col:col + side]
                np.maximum(window, items[n, k], out=window)
    return videos


def make_split(images: np.ndarray, labels: np.ndarray, count: int, canvas: Canvas,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """`count` sequences (uint8 [count, FRAMES, 1, size, size]) of items drawn from `images`, and
    the classes of their items (int64 [count, ITEMS])."""
    chosen = rng.integers(0, len(images), size=(count, ITEMS))
    items = shrink(images, canvas.item)[chosen]
    return compose(items, trajectories(count, canvas, rng), canvas.size), labels[chosen].astype(np.int64)


def generate(name: str, folder: Path, parents: dict[str, Path]) -> None:
    canvas = CANVASES[name]
    for split, source in (("train", "train"), ("test", "t10k")):
        images, labels = load_split(parents["fashion_mnist"], source)
        rng = np.random.default_rng(SEEDS[split])
        videos, classes = make_split(images, labels, getattr(canvas, split), canvas, rng)
        np.save(folder / f"x_{split}.npy", videos, allow_pickle=False)
        np.save(folder / f"y_{split}.npy", classes, allow_pickle=False)


def generate_64(folder: Path, parents: dict[str, Path]) -> None:
    """Moving Fashion-MNIST on a 64x64 canvas, items 28x28."""
    generate("moving_fmnist", folder, parents)


def generate_32(folder: Path, parents: dict[str, Path]) -> None:
    """The quick variant: a 32x32 canvas, items shrunk to 14x14."""
    generate("moving_fmnist_32", folder, parents)


def read(folder: Path) -> Readout:
    """Sequences uint8 [N, 20, 1, S, S] (`input`) and the classes of their two items (`labels`,
    int64 [N, 2])."""
    try:
        x_train, y_train, x_test, y_test = (np.load(folder / name, allow_pickle=False) for name in FILES)
    except (OSError, ValueError) as err:
        raise PipelineError(f"{folder}: cannot read Moving Fashion-MNIST ({err}); run "
                            f"`pipeline fetch {folder.name} --force`") from None
    return Readout({"input": x_train, "labels": y_train}, {"input": x_test, "labels": y_test}, CLASSES)
