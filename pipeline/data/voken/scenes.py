"""Scenes: 1..MAX_ITEMS Fashion-MNIST items, each with a region, size and tint, laid out on a
CANVAS x CANVAS picture (`sample_scene`), and the picture drawn (`render`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.data.fashion_mnist import CLASSES
from pipeline.data.text import NO_CLASS
from pipeline.data.video import shrink

CANVAS = 56
MAX_ITEMS = 4
ITEM_SIDES = {True: 28, False: 14}
"""An item's side: large (Fashion-MNIST's 28 px) or small (shrunk to 14 px)."""
DARK = 0.45
"""A dark item's intensities are scaled by this; a light one keeps its own."""
REGIONS = ("left", "right", "top", "bottom", "centre")
JITTER = 4
"""Pixels an item may lie off its region's anchor, each way."""
MAX_OVERLAP = 0.15
"""At most this share of the smaller of two items' boxes may lie under the other."""


@dataclass(frozen=True)
class Placement:
    """Where and how one item is drawn: its region, size, tint and top-left corner."""

    region: str
    large: bool
    dark: bool
    row: int
    col: int

    @property
    def side(self) -> int:
        return ITEM_SIDES[self.large]

    @property
    def box(self) -> tuple[int, int, int, int]:
        """(top, left, bottom, right), bottom and right exclusive."""
        return self.row, self.col, self.row + self.side, self.col + self.side


@dataclass(frozen=True)
class Scene:
    """Items: their classes, placements and (for a rendered scene) Fashion-MNIST image indices."""

    classes: tuple[int, ...]
    placements: tuple[Placement, ...]
    images: tuple[int, ...] = ()


def _anchor(region: str, side: int) -> tuple[int, int]:
    """The top-left corner of an item of `side` centred in its region (at the canvas edge)."""
    middle, far = (CANVAS - side) // 2, CANVAS - side
    return {"left": (middle, 0), "right": (middle, far), "top": (0, middle), "bottom": (far, middle),
            "centre": (middle, middle)}[region]


def _overlap(a: Placement, b: Placement) -> float:
    """The share of the smaller box that the other covers."""
    (t1, l1, b1, r1), (t2, l2, b2, r2) = a.box, b.box
    area = max(0, min(b1, b2) - max(t1, t2)) * max(0, min(r1, r2) - max(l1, l2))
    return area / min(a.side, b.side) ** 2


def sample_layout(rng: np.random.Generator, count: int) -> tuple[Placement, ...]:
    """`count` items in distinct regions, each large or small and light or dark (even odds), off
    its anchor by up to JITTER px; drawn again until no two overlap by more than MAX_OVERLAP
    (four small items always fit, so this ends)."""
    while True:
        regions = rng.permutation(len(REGIONS))[:count].tolist()
        large, dark = (rng.random(count) < 0.5).tolist(), (rng.random(count) < 0.5).tolist()
        jitter = rng.integers(-JITTER, JITTER + 1, size=(count, 2)).tolist()
        placements = [_place(REGIONS[regions[k]], large[k], dark[k], jitter[k]) for k in range(count)]
        if all(_overlap(a, b) <= MAX_OVERLAP for i, a in enumerate(placements) for b in placements[i + 1:]):
            return tuple(placements)


def _place(region: str, large: bool, dark: bool, jitter: list[int]) -> Placement:
    """An item at its region's anchor moved by `jitter` (row, column), kept on the canvas."""
    side = ITEM_SIDES[large]
    row, col = (min(max(a + j, 0), CANVAS - side) for a, j in zip(_anchor(region, side), jitter, strict=True))
    return Placement(region, large, dark, row, col)


def sample_scene(rng: np.random.Generator, labels: np.ndarray | None = None) -> Scene:
    """A scene of 1..MAX_ITEMS items: with `labels`, items are images drawn from that split (their
    classes theirs); without, classes only (a scene to describe, not to render)."""
    count = int(rng.integers(1, MAX_ITEMS + 1))
    placements = sample_layout(rng, count)
    if labels is None:
        return Scene(tuple(int(c) for c in rng.integers(0, len(CLASSES), size=count)), placements)
    images = rng.integers(0, len(labels), size=count)
    return Scene(tuple(int(labels[i]) for i in images), placements, tuple(int(i) for i in images))


def render(scene: Scene, images: np.ndarray) -> np.ndarray:
    """uint8 [CANVAS, CANVAS]: each item's image (shrunk if small, scaled by DARK if dark) pasted
    at its place on black, overlaps combined by their maximum."""
    canvas = np.zeros((CANVAS, CANVAS), dtype=np.uint8)
    for index, place in zip(scene.images, scene.placements, strict=True):
        item = shrink(images[index][None], place.side)[0]
        if place.dark:
            item = np.rint(item * DARK).astype(np.uint8)
        top, left, bottom, right = place.box
        np.maximum(canvas[top:bottom, left:right], item, out=canvas[top:bottom, left:right])
    return canvas


def scene_items(scenes: Sequence[Scene]) -> np.ndarray:
    """int64 [N, MAX_ITEMS]: each scene's item classes, NO_CLASS after the last."""
    items = np.full((len(scenes), MAX_ITEMS), NO_CLASS, dtype=np.int64)
    for n, scene in enumerate(scenes):
        items[n, :len(scene.classes)] = scene.classes
    return items
