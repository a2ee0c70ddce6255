"""`wordnet_supersense`: noun glosses labelled with their supersense (a text probe)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.data.registry import Readout
from pipeline.data.voken.constants import CORPUS_LENGTH, SEEDS, SUPERSENSE_MAX
from pipeline.data.voken.files import _labelled_text, _save
from pipeline.data.voken.tokenizer import encode, load_tokenizer
from pipeline.data.wordnet import SUPERSENSES, is_supersense_test, noun_supersense_synsets, wordnet_dir


def supersense_examples(folder: Path | None = None) -> dict[str, tuple[list[str], np.ndarray]]:
    """{split: (definitions, supersense labels int64)} of noun synsets, the split by
    wordnet.is_supersense_test, each subsampled (seeded) to SUPERSENSE_MAX."""
    nouns = noun_supersense_synsets(folder or wordnet_dir())
    rng = np.random.default_rng(SEEDS["supersense"])
    # WordNet gives a few synsets the very same definition: one in the test split keeps its twins
    # out of the training split.
    tested = {s.definition for s in nouns if is_supersense_test(s.offset)}
    splits = {}
    for split in ("train", "test"):
        chosen = [s for s in nouns if is_supersense_test(s.offset)] if split == "test" else \
            [s for s in nouns if not is_supersense_test(s.offset) and s.definition not in tested]
        keep = rng.permutation(len(chosen))[:SUPERSENSE_MAX[split]]
        splits[split] = ([chosen[i].definition for i in keep],
                         np.array([chosen[i].supersense for i in keep], dtype=np.int64))
    return splits


def generate_supersense(folder: Path, parents: dict[str, Path]) -> None:
    """Each split's definitions as token ids (x, int64 [N, CORPUS_LENGTH]) and supersenses (y)."""
    tokenizer = load_tokenizer(parents["wordnet_corpus"])
    for split, (texts, labels) in supersense_examples().items():
        ids, _ = encode(tokenizer, texts, CORPUS_LENGTH)
        _save(folder, {f"x_{split}": ids, f"y_{split}": labels})


def read_supersense(folder: Path) -> Readout:
    """Definition ids (`input`, int64 [N, 32]) and supersense (`label`, 0..25 of wordnet.SUPERSENSES)."""
    return _labelled_text(folder, "wordnet_supersense", SUPERSENSES)
