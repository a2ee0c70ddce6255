"""The datasets' parameters: token lengths, sizes, seeds and the tokenizer's file name, in one place
that every part of `pipeline.data.voken` reads them from."""

from __future__ import annotations

TOKENIZER_FILE = "tokenizer.json"
CORPUS_LENGTH, CAPTION_LENGTH, FACT_LENGTH = 32, 24, 16
"""Tokens of one example, [CLS] and [SEP] included."""

SEEDS = {"corpus_scenes": 41, "corpus_split": 42, "scenes_train": 43, "scenes_test": 44, "supersense": 45,
         "facts_split": 46, "facts": 47}
"""One generator per purpose, so each part depends only on its own seed."""

CORPUS_SCENES = 30_000
"""Scene descriptions (text only) among the corpus sentences."""
CORPUS_TEST_FRACTION = 0.02
SCENES = {"train": 20_000, "test": 2_000}
SUPERSENSE_MAX = {"train": 20_000, "test": 5_000}
FACT_CLASSES = ("false", "true")
