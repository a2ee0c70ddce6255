"""`grounded_facts`: true and false sentences comparing two clothing classes on what images show
and text rarely says (brightness, size), judged by Fashion-MNIST's training images."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from pipeline.data.fashion_mnist import CLASSES, load_split
from pipeline.data.registry import Readout
from pipeline.data.voken.captions import _article, _pick
from pipeline.data.voken.constants import FACT_CLASSES, FACT_LENGTH, SEEDS
from pipeline.data.voken.files import _labelled_text, _save
from pipeline.data.voken.names import SYNONYMS
from pipeline.data.voken.tokenizer import encode, load_tokenizer

PROPERTIES = ("brightness", "size")
SIZE_THRESHOLD = 32
"""A pixel counts towards an item's size (ink area) when brighter than this."""
MARGINS = {"brightness": 0.05, "size": 0.10}
"""Pairs whose class statistics differ by less than this share of the larger are not compared."""
FACT_TEST_CLASSES = 3
"""Classes (of 10, seeded) that no training sentence names: the test split compares each with every
other class, so a probe must read an unseen class's brightness or size from its features, not
infer it from the order of the classes it was trained on (the facts are total orders)."""
FACTS_PER_CASE = 20
"""Sentences for each pair, order of its two classes and direction of the comparison."""

COMPARATIVES = {
    ("brightness", True): ("brighter", "lighter", "paler"),
    ("brightness", False): ("darker", "dimmer"),
    ("size", True): ("larger", "bigger"),
    ("size", False): ("smaller",),
}
"""Comparative adjectives by (property, whether the subject has more of it)."""
SPACE_WORDS = {True: "more", False: "less"}
"""Size also as 'takes up more / less space' and 'covers more / less of the picture'."""
FACT_TEMPLATES = ("{s} {is} usually {adj} than {o}", "{s} {is} {adj} than {o}", "{s} {tends} to be {adj} than {o}",
                  "on average {s} {is} {adj} than {o}", "{s} {looks} {adj} than {o}", "{s} {is} often {adj} than {o}")
SPACE_TEMPLATES = ("{s} usually {takes} up {more} space than {o}", "{s} {takes} up {more} space than {o}",
                   "{s} {covers} {more} of the picture than {o}")
_VERBS = {"is": "are", "tends": "tend", "looks": "look", "takes": "take", "covers": "cover"}


def class_statistics(images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """float64 [10, 2]: each class's mean over its images of (brightness: the mean intensity of the
    item's ink pixels, those > 0; size: its ink area, pixels > SIZE_THRESHOLD)."""
    pixels = images.reshape(len(images), -1).astype(np.float64)
    ink = pixels > 0
    brightness = pixels.sum(axis=1) / np.maximum(ink.sum(axis=1), 1)
    area = (pixels > SIZE_THRESHOLD).sum(axis=1).astype(np.float64)
    return np.array([[brightness[labels == c].mean(), area[labels == c].mean()] for c in range(len(CLASSES))])


def comparable(stats: np.ndarray, a: int, b: int, prop: int) -> bool:
    """Whether classes a and b differ on property `prop` by MARGINS at least."""
    x, y = stats[a, prop], stats[b, prop]
    return abs(x - y) >= MARGINS[PROPERTIES[prop]] * max(x, y)


def fact_test_classes() -> list[int]:
    """The FACT_TEST_CLASSES classes only test sentences name, seeded."""
    return sorted(np.random.default_rng(SEEDS["facts_split"]).permutation(len(CLASSES))[:FACT_TEST_CLASSES].tolist())


def fact_pairs() -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(train, test) unordered class pairs (a < b): the test pairs are those with a held-out class
    (fact_test_classes), the training pairs the others."""
    held_out = set(fact_test_classes())
    pairs = [(a, b) for a in range(len(CLASSES)) for b in range(a + 1, len(CLASSES))]
    test = [p for p in pairs if held_out & set(p)]
    return [p for p in pairs if p not in test], test


def _noun_phrase(cls: int, plural: bool, rng: np.random.Generator) -> str:
    name = SYNONYMS[cls][int(rng.integers(len(SYNONYMS[cls])))]
    if plural:
        return name.plural
    phrase = f"pair of {name.plural}" if name.pair else name.singular
    return f"{_article(phrase)} {phrase}"


def fact_sentence(subject: int, obj: int, prop: str, more: bool, rng: np.random.Generator) -> str:
    """'a sandal is usually darker than a coat', 'sneakers take up less space than coats', ...:
    says that `subject` has more (or less) of `prop` than `obj`."""
    plural = rng.random() < 0.5
    verbs = {verb: (many if plural else verb) for verb, many in _VERBS.items()}
    words = {"s": _noun_phrase(subject, plural, rng), "o": _noun_phrase(obj, plural, rng), **verbs}
    if prop == "size" and rng.random() < 0.4:
        return _pick(rng, SPACE_TEMPLATES).format(more=SPACE_WORDS[more], **words)
    return _pick(rng, FACT_TEMPLATES).format(adj=_pick(rng, COMPARATIVES[prop, more]), **words)


def make_facts(stats: np.ndarray, pairs: Sequence[tuple[int, int]], rng: np.random.Generator,
               fits: Callable[[str], bool] | None = None) -> tuple[list[str], np.ndarray]:
    """Sentences comparing each pair on each property it differs on by the margin, both ways round
    and in both directions (so half are true), FACTS_PER_CASE of each; labels int64 (1 true)."""
    texts, labels = [], []
    for a, b in pairs:
        for p, prop in enumerate(PROPERTIES):
            if not comparable(stats, a, b, p):
                continue
            for subject, obj in ((a, b), (b, a)):
                for more in (True, False):
                    truth = (stats[subject, p] > stats[obj, p]) == more
                    for _ in range(FACTS_PER_CASE):
                        texts.append(_fitting(fits, subject, obj, prop, more, rng))
                        labels.append(int(truth))
    return texts, np.array(labels, dtype=np.int64)


def _fitting(fits: Callable[[str], bool] | None, subject: int, obj: int, prop: str, more: bool,
             rng: np.random.Generator, tries: int = 100) -> str:
    """The first fact_sentence that `fits` accepts."""
    for _ in range(tries):
        text = fact_sentence(subject, obj, prop, more, rng)
        if fits is None or fits(text):
            return text
    raise ValueError(f"no sentence of {tries} fits; the last: {text!r}")


def generate_facts(folder: Path, parents: dict[str, Path]) -> None:
    """Each split's sentences as token ids (x, int64 [N, FACT_LENGTH]) and truth (y), judged by the
    class statistics of Fashion-MNIST's training images; test sentences name a class no training
    sentence names."""
    tokenizer = load_tokenizer(parents["wordnet_corpus"])
    images, labels = load_split(parents["fashion_mnist"], "train")
    stats = class_statistics(images, labels)
    rng = np.random.default_rng(SEEDS["facts"])

    def fits(text: str) -> bool:
        return len(tokenizer.encode(text).ids) <= FACT_LENGTH - 2

    for split, pairs in zip(("train", "test"), fact_pairs(), strict=True):
        texts, truth = make_facts(stats, pairs, rng, fits)
        ids, _ = encode(tokenizer, texts, FACT_LENGTH)
        _save(folder, {f"x_{split}": ids, f"y_{split}": truth})


def read_facts(folder: Path) -> Readout:
    """Sentence ids (`input`, int64 [N, 16]) and truth (`label`: 0 false, 1 true)."""
    return _labelled_text(folder, "grounded_facts", FACT_CLASSES)
