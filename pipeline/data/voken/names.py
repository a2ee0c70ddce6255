"""The Fashion-MNIST classes' names: each class's words (WordNet lemmas, singular and plural) and
where a text names a class (`name_spans`)."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Name:
    """One way to name a class: singular and plural, or a plural-only noun counted in pairs."""

    singular: str
    plural: str
    pair: bool = False


def _names(*words: str) -> tuple[Name, ...]:
    return tuple(Name(word, word + ("es" if word.endswith("ss") else "s")) for word in words)


def _pairs(*words: str) -> tuple[Name, ...]:
    return tuple(Name(word, word, pair=True) for word in words)


SYNONYMS: tuple[tuple[Name, ...], ...] = (
    # T-shirt/top: {jersey, T-shirt, tee_shirt} 03595614-n and {top} 04453666-n ("a garment ... from the
    # shoulders to the waist"); 'jersey' left out: in glosses it is mostly New Jersey or a cattle breed.
    _names("t-shirt", "tee shirt", "top"),
    # Trouser: {trouser, pant} 04489008-n and {slacks} 04233715-n, as the plural-only nouns they are.
    _pairs("trousers", "pants", "slacks"),
    # Pullover: {pullover, slipover} 04021028-n and {sweater, jumper} 04370048-n.
    _names("pullover", "slipover", "sweater", "jumper"),
    # Dress: {dress, frock} 03236735-n.
    _names("dress", "frock"),
    # Coat: {coat} 03057021-n and {greatcoat, overcoat, topcoat} 03456665-n.
    _names("coat", "overcoat", "greatcoat", "topcoat"),
    # Sandal: {sandal} 04133789-n.
    _names("sandal"),
    # Shirt: {shirt} 04197391-n.
    _names("shirt"),
    # Sneaker: {gym_shoe, sneaker, tennis_shoe} 03472535-n and {plimsoll} 03967270-n.
    _names("sneaker", "gym shoe", "tennis shoe", "plimsoll"),
    # Bag: {bag} 02773037-n and {bag, handbag, pocketbook, purse} 02774152-n.
    _names("bag", "handbag", "purse", "pocketbook"),
    # Ankle boot: WordNet has no ankle boot; the class name and {boot} 02872752-n.
    _names("ankle boot", "boot"),
)
"""Each Fashion-MNIST class's words (order of fashion_mnist.CLASSES): the lemmas of the WordNet 3.0
synsets named (offset-pos), kept here so the grammar does not need WordNet."""


def _surface_pattern(word: str) -> str:
    """A regex for a name as written or as decoded from tokens ('t - shirt'): spaces around a
    hyphen optional, any whitespace between words."""
    return r"\s*-\s*".join(r"\s+".join(re.escape(part) for part in piece.split()) for piece in word.split("-"))


_SURFACES = sorted({(form, cls) for cls, names in enumerate(SYNONYMS) for name in names
                    for form in (name.singular, name.plural)}, key=lambda fc: (-len(fc[0]), fc[0]))
NAME_PATTERN = re.compile(r"(?<![\w-])(?:" + "|".join(f"({_surface_pattern(form)})" for form, _ in _SURFACES)
                          + r")(?![\w-])", re.IGNORECASE)
"""Any class name or synonym (longest first, so 'tee shirt' is not read as 'shirt'), as a whole word."""
_HEAD_WORDS = frozenset(re.findall(r"[a-z]+$", form)[0] for form, _ in _SURFACES)
_LETTERS = re.compile(r"[a-z]+")


def name_spans(text: str) -> list[tuple[int, int, int]]:
    """(start, end, class) of every class name or synonym in `text`."""
    if _HEAD_WORDS.isdisjoint(_LETTERS.findall(text.lower())):
        return []  # the quick answer for most sentences: no word a name ends with
    return [(m.start(), m.end(), _SURFACES[m.lastindex - 1][1]) for m in NAME_PATTERN.finditer(text)]
