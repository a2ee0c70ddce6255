"""The offline data of the vokenization chain (Tan & Bansal 2020), all made by code, seeded, so the
fetch stage checks what they write against the registry's sha256s like any downloaded file:

- `wordnet_corpus`: the language model's text, WordNet's glosses and example sentences plus scene
  descriptions, and the project's one WordPiece tokenizer (tokenizer.json), trained on it;
- `fmnist_scenes`: 1-4 Fashion-MNIST items on a 56x56 canvas, each captioned by a small grammar
  that names every item's class in varied words (WordNet synonyms), sometimes with its size, tint
  and place: the image-text pairs a token-image matcher learns from;
- `wordnet_supersense`: noun glosses labelled with their supersense (a text probe);
- `grounded_facts`: true and false sentences comparing two clothing classes on what images show
  and text rarely says (brightness, size), judged by Fashion-MNIST's training images.

Every token field holds ids of the one tokenizer, `[CLS] tokens [SEP]` padded with PAD (int64 from
the files to the model); `word_class` marks the tokens of a clothing word with the class it names.

The parts, by topic: `constants` (lengths, sizes, seeds: the one place they are set), `names`,
`scenes`, `captions`, `tokenizer`, `files`, and one module per dataset: `corpus` (wordnet_corpus),
`scene_data` (fmnist_scenes), `supersense` (wordnet_supersense), `facts` (grounded_facts).
"""

from __future__ import annotations

from pipeline.data.voken.captions import (
    NUMBER_WORDS,
    ONE_ODDS,
    POSITION_PHRASES,
    SIZE_WORDS,
    STATE_ODDS,
    TEMPLATES,
    TINT_WORDS,
    Group,
    describe,
    group_phrase,
    plan_groups,
    render_caption,
)
from pipeline.data.voken.constants import (
    CAPTION_LENGTH,
    CORPUS_LENGTH,
    CORPUS_SCENES,
    CORPUS_TEST_FRACTION,
    FACT_CLASSES,
    FACT_LENGTH,
    SCENES,
    SEEDS,
    SUPERSENSE_MAX,
    TOKENIZER_FILE,
)
from pipeline.data.voken.corpus import (
    corpus_splits,
    generate_corpus,
    read_corpus,
    scene_descriptions,
    wordnet_sentences,
)
from pipeline.data.voken.facts import (
    COMPARATIVES,
    FACT_TEMPLATES,
    FACT_TEST_CLASSES,
    FACTS_PER_CASE,
    MARGINS,
    PROPERTIES,
    SIZE_THRESHOLD,
    SPACE_TEMPLATES,
    SPACE_WORDS,
    class_statistics,
    comparable,
    fact_pairs,
    fact_sentence,
    fact_test_classes,
    generate_facts,
    make_facts,
    read_facts,
)
from pipeline.data.voken.names import (
    NAME_PATTERN,
    SYNONYMS,
    Name,
    name_spans,
)
from pipeline.data.voken.scene_data import (
    generate_scenes,
    make_scenes,
    read_scenes,
)
from pipeline.data.voken.scenes import (
    CANVAS,
    DARK,
    ITEM_SIDES,
    JITTER,
    MAX_ITEMS,
    MAX_OVERLAP,
    REGIONS,
    Placement,
    Scene,
    render,
    sample_layout,
    sample_scene,
    scene_items,
)
from pipeline.data.voken.supersense import (
    generate_supersense,
    read_supersense,
    supersense_examples,
)
from pipeline.data.voken.tokenizer import (
    continuation_alphabet,
    decode,
    encode,
    load_tokenizer,
    train_tokenizer,
)

__all__ = [
    "TOKENIZER_FILE",
    "CORPUS_LENGTH",
    "CAPTION_LENGTH",
    "FACT_LENGTH",
    "SEEDS",
    "CORPUS_SCENES",
    "CORPUS_TEST_FRACTION",
    "SCENES",
    "SUPERSENSE_MAX",
    "FACT_CLASSES",
    "Name",
    "SYNONYMS",
    "NAME_PATTERN",
    "name_spans",
    "CANVAS",
    "MAX_ITEMS",
    "ITEM_SIDES",
    "DARK",
    "REGIONS",
    "JITTER",
    "MAX_OVERLAP",
    "Placement",
    "Scene",
    "sample_layout",
    "sample_scene",
    "render",
    "scene_items",
    "NUMBER_WORDS",
    "SIZE_WORDS",
    "TINT_WORDS",
    "POSITION_PHRASES",
    "STATE_ODDS",
    "ONE_ODDS",
    "TEMPLATES",
    "Group",
    "plan_groups",
    "group_phrase",
    "render_caption",
    "describe",
    "continuation_alphabet",
    "train_tokenizer",
    "load_tokenizer",
    "decode",
    "encode",
    "wordnet_sentences",
    "scene_descriptions",
    "corpus_splits",
    "generate_corpus",
    "read_corpus",
    "make_scenes",
    "generate_scenes",
    "read_scenes",
    "supersense_examples",
    "generate_supersense",
    "read_supersense",
    "PROPERTIES",
    "SIZE_THRESHOLD",
    "MARGINS",
    "FACT_TEST_CLASSES",
    "FACTS_PER_CASE",
    "COMPARATIVES",
    "SPACE_WORDS",
    "FACT_TEMPLATES",
    "SPACE_TEMPLATES",
    "class_statistics",
    "comparable",
    "fact_test_classes",
    "fact_pairs",
    "fact_sentence",
    "make_facts",
    "generate_facts",
    "read_facts",
]
