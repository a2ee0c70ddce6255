"""Captions: a small grammar that names every item of a scene in varied words, sometimes with its
size, tint and place (`describe`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from pipeline.data.voken.names import SYNONYMS, Name
from pipeline.data.voken.scenes import Scene

NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four"}
SIZE_WORDS = {True: ("large", "big"), False: ("small", "little", "tiny")}
TINT_WORDS = {False: ("light", "bright", "pale"), True: ("dark", "dim")}
POSITION_PHRASES = {
    "left": ("on the left", "at the left side"),
    "right": ("on the right", "at the right side"),
    "top": ("in the upper part", "near the upper edge", "up above"),
    "bottom": ("in the lower part", "near the lower edge", "down below"),
    "centre": ("in the middle", "in the centre", "at the center"),
}
"""No place is called 'top': that word names a class."""
STATE_ODDS = 0.5
"""The odds that a caption states an item's size, its tint, its place (each on its own)."""
ONE_ODDS = 0.2
"""The odds that a single item is counted 'one' rather than given an article."""
TEMPLATES = ("a picture of {all}", "an image of {all}", "there {be} {all}", "{all}", "we can see {all}",
             "this scene shows {all}", "{all} on a black background", "{first} next to {rest}",
             "{first} beside {rest}")
"""The last two need two groups of items at least."""


@dataclass(frozen=True)
class Group:
    """The items of one class in a caption: how many, the name used, and what is said of them
    (a size word, a tint word, a place; None where it is not said)."""

    cls: int
    count: int
    name: Name
    one: bool
    size: str | None
    tint: str | None
    position: str | None


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _shared(values: list, rng: np.random.Generator, words: dict) -> str | None:
    """A word for the value all items share, said with STATE_ODDS; None if they differ or unsaid."""
    say = rng.random() < STATE_ODDS
    return _pick(rng, words[values[0]]) if say and len(set(values)) == 1 else None


def plan_groups(scene: Scene, rng: np.random.Generator) -> list[Group]:
    """The scene's items grouped by class, in random order, each group's words chosen."""
    classes = list(dict.fromkeys(scene.classes))
    groups = []
    for k in rng.permutation(len(classes)):
        cls = classes[k]
        places = [p for c, p in zip(scene.classes, scene.placements, strict=True) if c == cls]
        name = SYNONYMS[cls][int(rng.integers(len(SYNONYMS[cls])))]
        one = rng.random() < ONE_ODDS
        size = _shared([p.large for p in places], rng, SIZE_WORDS)
        tint = _shared([p.dark for p in places], rng, TINT_WORDS)
        position = _shared([p.region for p in places], rng, POSITION_PHRASES) if len(places) == 1 else None
        groups.append(Group(cls, len(places), name, one, size, tint, position))
    return groups


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def group_phrase(group: Group) -> str:
    """'two small dark sandals', 'a pair of trousers on the left', 'one overcoat', ..."""
    words = [w for w in (group.size, group.tint) if w]
    if group.name.pair:
        words = ["pair" if group.count == 1 else "pairs", "of", *words, group.name.plural]
    else:
        words.append(group.name.singular if group.count == 1 else group.name.plural)
    phrase = " ".join(words)
    if group.count > 1 or group.one:
        phrase = f"{NUMBER_WORDS[group.count]} {phrase}"
    else:
        phrase = f"{_article(phrase)} {phrase}"
    return f"{phrase} {group.position}" if group.position else phrase


def _listing(phrases: list[str]) -> str:
    return phrases[0] if len(phrases) == 1 else f"{', '.join(phrases[:-1])} and {phrases[-1]}"


def render_caption(template: str, groups: list[Group]) -> str:
    """The caption of `groups` by `template` ('there is' or 'there are' as the first group asks)."""
    phrases = [group_phrase(g) for g in groups]
    rest = _listing(phrases[1:]) if len(phrases) > 1 else ""
    return template.format(all=_listing(phrases), first=phrases[0], rest=rest,
                           be="is" if groups[0].count == 1 else "are")


def describe(scene: Scene, rng: np.random.Generator, fits: Callable[[str], bool] | None = None) -> str:
    """A caption naming every item's class (a count word for a repeated class), each item's size,
    tint and place said only sometimes. Where `fits` rejects it, what is said of the items is
    dropped (places, then tints, then sizes) and then the bare listing used, until it fits."""
    groups = plan_groups(scene, rng)
    usable = [t for t in TEMPLATES if len(groups) > 1 or "{first}" not in t]
    template = usable[int(rng.integers(len(usable)))]
    caption = render_caption(template, groups)
    if fits is None:
        return caption
    for attribute in ("position", "tint", "size"):
        for k in range(len(groups)):
            if fits(caption):
                return caption
            groups[k] = replace(groups[k], **{attribute: None})
            caption = render_caption(template, groups)
    return caption if fits(caption) else render_caption("{all}", groups)
