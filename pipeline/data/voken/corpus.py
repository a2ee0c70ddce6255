"""`wordnet_corpus`: the language model's text (WordNet's glosses and examples plus scene
descriptions) and the tokenizer trained on it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.data.registry import Readout
from pipeline.data.voken.captions import describe
from pipeline.data.voken.constants import (
    CORPUS_LENGTH,
    CORPUS_SCENES,
    CORPUS_TEST_FRACTION,
    SEEDS,
    TOKENIZER_FILE,
)
from pipeline.data.voken.files import _load, _save
from pipeline.data.voken.scenes import sample_scene
from pipeline.data.voken.tokenizer import encode, train_tokenizer
from pipeline.data.wordnet import PARTS_OF_SPEECH, supersense_test_definitions, synsets, wordnet_dir


def wordnet_sentences(folder: Path | None = None) -> list[str]:
    """Every definition and example sentence of WordNet's four parts of speech, in file order,
    each once, none that is the definition of a supersense test synset (so no probe's test gloss
    is text the language model saw)."""
    folder = folder or wordnet_dir()
    parts = {part: list(synsets(part, folder)) for part in PARTS_OF_SPEECH}
    held_out = supersense_test_definitions(parts["noun"])
    sentences: dict[str, None] = {}
    for part in PARTS_OF_SPEECH:
        for synset in parts[part]:
            for text in (synset.definition, *synset.examples):
                if text and text not in held_out:
                    sentences.setdefault(text)
    return list(sentences)


def scene_descriptions(count: int, seed: int) -> list[str]:
    """Captions of `count` scenes (classes and layouts drawn, nothing rendered)."""
    rng = np.random.default_rng(seed)
    return [describe(sample_scene(rng), rng) for _ in range(count)]


def corpus_splits(folder: Path | None = None) -> tuple[list[str], list[str]]:
    """(train, test) sentences of the corpus: WordNet's text and CORPUS_SCENES scene descriptions,
    shuffled (seeded), the first CORPUS_TEST_FRACTION of them the test split."""
    sentences = wordnet_sentences(folder) + scene_descriptions(CORPUS_SCENES, SEEDS["corpus_scenes"])
    order = np.random.default_rng(SEEDS["corpus_split"]).permutation(len(sentences))
    shuffled = [sentences[i] for i in order]
    test = round(CORPUS_TEST_FRACTION * len(shuffled))
    return shuffled[test:], shuffled[:test]


def generate_corpus(folder: Path, parents: dict[str, Path] | None = None) -> None:
    """tokenizer.json (trained on the training sentences only) and each split's token ids (x) and
    word classes (w), int64 [N, CORPUS_LENGTH]."""
    train, test = corpus_splits()
    tokenizer = train_tokenizer(train)
    tokenizer.save(str(folder / TOKENIZER_FILE))
    for split, texts in (("train", train), ("test", test)):
        ids, classes = encode(tokenizer, texts, CORPUS_LENGTH)
        _save(folder, {f"x_{split}": ids, f"w_{split}": classes})


def read_corpus(folder: Path) -> Readout:
    """Token ids (`input`) and word classes (`word_class`), int64 [N, 32]; no labels."""
    arrays = _load(folder, ("x_train", "w_train", "x_test", "w_test"), "wordnet_corpus")
    return Readout({"input": arrays["x_train"], "word_class": arrays["w_train"]},
                   {"input": arrays["x_test"], "word_class": arrays["w_test"]})
