"""The vokenization chain's data: the WordNet reader, the scene grammar and renderer, the tokenizer,
and the four generated datasets (wordnet_corpus, fmnist_scenes, wordnet_supersense, grounded_facts)
as the fetch stage makes them."""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from pipeline import plugins
from pipeline.data import voken
from pipeline.data.fashion_mnist import load_split
from pipeline.data.fetch import fetch_dataset
from pipeline.data.registry import (
    FASHION_MNIST,
    FMNIST_SCENES,
    GROUNDED_FACTS,
    WORDNET_CORPUS,
    WORDNET_SUPERSENSE,
    DatasetSource,
    Readout,
)
from pipeline.data.text import CLS, NO_CLASS, PAD, SEP, SPECIAL_TOKENS, VOCAB_SIZE
from pipeline.data.voken import (
    CANVAS,
    COMPARATIVES,
    DARK,
    NUMBER_WORDS,
    SPACE_WORDS,
    Scene,
    class_statistics,
    decode,
    describe,
    encode,
    fact_pairs,
    load_tokenizer,
    name_spans,
    render,
    sample_scene,
    scene_descriptions,
    train_tokenizer,
)
from pipeline.data.wordnet import (
    SUPERSENSES,
    Synset,
    noun_supersense_synsets,
    parse_line,
    split_gloss,
    supersense_test_definitions,
    wordnet_dir,
)
from pipeline.errors import PipelineError
from tests.conftest import needs_fashion_mnist, needs_wordnet

VOKEN_DATASETS = (WORDNET_CORPUS, FMNIST_SCENES, WORDNET_SUPERSENSE, GROUNDED_FACTS)


def scenes(seed: int, count: int, labels: np.ndarray | None = None) -> list[tuple[Scene, str]]:
    rng = np.random.default_rng(seed)
    return [(scene := sample_scene(rng, labels), describe(scene, rng)) for _ in range(count)]


# --- The grammar, the renderer, the WordNet reader (no data needed) -------------------------------


def test_the_same_seed_gives_the_same_scenes_and_captions_and_another_seed_others():
    assert scenes(5, 50) == scenes(5, 50)
    assert scenes(5, 50) != scenes(6, 50)
    assert scene_descriptions(50, 5) == [caption for _, caption in scenes(5, 50)]


def test_a_caption_names_every_item_of_its_scene_and_nothing_else():
    for scene, caption in scenes(0, 400):
        counts = Counter(scene.classes)
        named = name_spans(caption)
        assert {cls for _, _, cls in named} == set(counts), caption
        # A count word counts the items of the class named next.
        for match in re.finditer(r"\b(" + "|".join(NUMBER_WORDS.values()) + r")\b", caption):
            number = next(n for n, word in NUMBER_WORDS.items() if word == match.group(1))
            cls = next(cls for start, _, cls in named if start > match.start())
            assert counts[cls] == number, caption
        # A class seen more than once gets a count word.
        for count in counts.values():
            if count > 1:
                assert NUMBER_WORDS[count] in caption.split(), caption


def test_captions_vary_and_say_what_they_say_about_items_only_sometimes():
    captions = [caption for _, caption in scenes(1, 600)]
    assert len(set(captions)) > 500
    words = Counter(word for caption in captions for word in caption.split())
    for word in ("picture", "there", "next", "small", "large", "dark", "left", "middle"):
        assert 0 < words[word] < len(captions), word
    sneakers = {caption[start:end] for caption in captions for start, end, cls in name_spans(caption) if cls == 7}
    assert {"sneaker", "gym shoe", "tennis shoe", "plimsoll"} <= {w.removesuffix("s") for w in sneakers}


def test_a_rendered_scene_holds_ink_exactly_where_its_items_were_placed():
    images = np.full((10, 28, 28), 255, dtype=np.uint8)  # each item inks its whole box
    for scene, _ in scenes(2, 100, labels=np.arange(10)):
        picture = render(scene, images)
        expected = np.zeros((CANVAS, CANVAS), dtype=np.uint8)
        for place in scene.placements:
            top, left, bottom, right = place.box
            assert 0 <= top < bottom <= CANVAS
            assert 0 <= left < right <= CANVAS
            value = np.uint8(np.rint(255 * DARK)) if place.dark else 255
            np.maximum(expected[top:bottom, left:right], value, out=expected[top:bottom, left:right])
        np.testing.assert_array_equal(picture, expected)


def test_items_lie_in_their_region_and_hardly_overlap():
    for scene, _ in scenes(3, 300):
        for place in scene.placements:
            row, col = place.row + place.side / 2, place.col + place.side / 2
            assert {"left": col < 20, "right": col > 36, "top": row < 20, "bottom": row > 36,
                    "centre": 20 <= row <= 36 and 20 <= col <= 36}[place.region], place
        assert len({p.region for p in scene.placements}) == len(scene.placements)


def test_names_are_found_as_whole_words_longest_first_also_in_decoded_text():
    assert [cls for *_, cls in name_spans("a tee shirt, a T-Shirt and a t - shirt by a shirt")] == [0, 0, 0, 6]
    assert name_spans("a topcoat on top of the tabletop") == [(2, 9, 4), (13, 16, 0)]
    assert [cls for *_, cls in name_spans("two ankle boots and a boot; no bagel")] == [9, 9]


def test_a_synset_line_is_split_into_words_definition_and_examples():
    line = ('04370048 06 n 02 sweater 0 jumper 4 001 @ 03419014 n 0000 | a crocheted or knitted garment; '
            'worn in winter; "she wore a sweater"; "a warm one"  ')
    synset = parse_line(line)
    assert synset == Synset(4370048, 6, "n", ("sweater", "jumper"), "a crocheted or knitted garment; worn in winter",
                            ("she wore a sweater", "a warm one"))
    assert synset.supersense == SUPERSENSES.index("noun.artifact")
    assert split_gloss("no examples here") == ("no examples here", ())


def test_a_missing_wordnet_folder_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("WORDNET_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(PipelineError, match=r"apt-get install wordnet-base.*WORDNET_DIR") as raised:
        wordnet_dir()
    assert "\n" not in str(raised.value)
    with pytest.raises(PipelineError, match="wordnet-base"):
        voken.generate_corpus(tmp_path)
    monkeypatch.delenv(WORDNET_CORPUS.mirror_env, raising=False)
    with pytest.raises(PipelineError, match=r"apt-get install wordnet-base"):
        fetch_dataset(WORDNET_CORPUS, root=tmp_path / "data")


def test_the_tokenizer_is_trained_the_same_every_time_its_special_tokens_first():
    sentences = scene_descriptions(300, 9) + ["the Ä quick brown fox-like dogs (jumped); 42 times"] * 3
    first, second = train_tokenizer(sentences, vocab_size=150), train_tokenizer(sentences, vocab_size=150)
    assert first.to_str() == second.to_str()
    assert [first.id_to_token(i) for i in range(len(SPECIAL_TOKENS))] == list(SPECIAL_TOKENS)
    assert first.get_vocab_size() == 150
    with pytest.raises(ValueError, match="too little text"):
        train_tokenizer(["a b"], vocab_size=150)


# --- The generated datasets, fetched once --------------------------------------------------------

@pytest.fixture(scope="module")
def fetched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """The four datasets (and Fashion-MNIST) fetched into one tmp data folder, by the fetch stage:
    generated, then checked against the registry's sha256s."""
    root = tmp_path_factory.mktemp("voken") / "data"
    with pytest.MonkeyPatch.context() as patch:
        for source in VOKEN_DATASETS:
            patch.delenv(source.mirror_env, raising=False)
        yield {source.name: fetch_dataset(source, root=root) for source in (FASHION_MNIST, *VOKEN_DATASETS)}


@pytest.fixture(scope="module")
def readouts(fetched: dict[str, Path]) -> dict[str, Readout]:
    return {source.name: source.load_reader()(fetched[source.name]) for source in VOKEN_DATASETS}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("source", VOKEN_DATASETS, ids=lambda s: s.name)
@needs_wordnet
@needs_fashion_mnist
def test_fetch_generates_exactly_the_registered_files_read_as_their_fields(
        source: DatasetSource, fetched: dict[str, Path], readouts: dict[str, Readout]):
    assert plugins.datasets()[source.name] is source
    assert all(sha256(fetched[source.name] / file.name) == file.sha256 for file in source.files)
    readout = readouts[source.name]
    for split in (readout.train, readout.test):
        assert set(split) == {field.name for field in source.fields}
        for field in source.fields:
            assert split[field.name].dtype == np.dtype(field.dtype), field.name
            assert split[field.name].shape[1:] == field.shape, field.name
    assert (readout.classes is not None) == source.labelled


@needs_wordnet
@needs_fashion_mnist
def test_token_fields_are_cls_tokens_sep_then_padding(readouts: dict[str, Readout]):
    for name, field in (("wordnet_corpus", "input"), ("fmnist_scenes", "tokens"), ("wordnet_supersense", "input"),
                        ("grounded_facts", "input")):
        for split in (readouts[name].train, readouts[name].test):
            ids = split[field]
            lengths = (ids != PAD).sum(axis=1)
            assert (ids[:, 0] == CLS).all(), name
            assert (ids[np.arange(len(ids)), lengths - 1] == SEP).all(), name
            assert (np.cumsum(ids == PAD, axis=1)[ids != PAD] == 0).all(), name  # no token after padding
            assert ids.min() >= 0
            assert ids.max() < VOCAB_SIZE
    corpus = readouts["wordnet_corpus"].train
    specials = np.isin(corpus["input"], (PAD, CLS, SEP))
    assert (corpus["word_class"][specials] == NO_CLASS).all()
    assert (corpus["word_class"] >= NO_CLASS).all()
    assert corpus["word_class"].max() == 9


@needs_wordnet
@needs_fashion_mnist
def test_every_scene_caption_names_exactly_its_items(readouts: dict[str, Readout], fetched: dict[str, Path]):
    scenes_ = readouts["fmnist_scenes"]
    assert len(scenes_.train["input"]) == 20_000
    assert len(scenes_.test["input"]) == 2_000
    for split in (scenes_.train, scenes_.test):
        for items, classes in zip(split["items"], split["word_class"], strict=True):
            assert set(items[items != NO_CLASS].tolist()) == set(classes[classes != NO_CLASS].tolist())
    tokenizer = load_tokenizer(fetched["wordnet_corpus"])
    for ids, items in zip(scenes_.test["tokens"][:200], scenes_.test["items"][:200], strict=True):
        counts = Counter(items[items != NO_CLASS].tolist())
        assert {cls for *_, cls in name_spans(decode(tokenizer, ids))} == set(counts)


@needs_wordnet
@needs_fashion_mnist
def test_the_tokenizer_round_trips_a_caption(fetched: dict[str, Path]):
    tokenizer = load_tokenizer(fetched["wordnet_corpus"])
    assert tokenizer.get_vocab_size() == VOCAB_SIZE
    assert [tokenizer.token_to_id(token) for token in SPECIAL_TOKENS] == list(range(len(SPECIAL_TOKENS)))
    for _, caption in scenes(7, 20):
        ids, classes = encode(tokenizer, [caption], 40)
        assert ids.dtype == np.int64
        assert classes.dtype == np.int64
        assert re.sub(r" - ", "-", decode(tokenizer, ids[0])) == caption


@needs_wordnet
@needs_fashion_mnist
def test_supersense_labels_and_no_test_definition_in_the_corpus(readouts: dict[str, Readout]):
    supersense, corpus = readouts["wordnet_supersense"], readouts["wordnet_corpus"]
    assert supersense.classes == SUPERSENSES
    assert len(SUPERSENSES) == 26
    for split in (supersense.train, supersense.test):
        assert split["label"].min() >= 0
        assert split["label"].max() <= 25
    assert len(supersense.train["label"]) == 20_000
    assert len(supersense.test["label"]) == 5_000
    assert len(np.unique(supersense.train["label"])) == 26
    sentences = {row.tobytes() for row in np.concatenate([corpus.train["input"], corpus.test["input"]])}
    assert not any(row.tobytes() in sentences for row in supersense.test["input"])
    assert sum(row.tobytes() in sentences for row in supersense.train["input"]) > 0.9 * 20_000


@needs_wordnet
def test_the_corpus_text_holds_no_definition_of_a_supersense_test_synset():
    held_out = supersense_test_definitions(noun_supersense_synsets())
    assert 0.08 < len(held_out) / 82_115 < 0.12
    assert held_out.isdisjoint(voken.wordnet_sentences())
    examples = voken.supersense_examples()
    assert set(examples["test"][0]) <= held_out
    assert held_out.isdisjoint(examples["train"][0])  # nor its twins: synsets sharing a test definition


def fact_meaning(text: str) -> tuple[int, int, int, bool]:
    """(subject class, object class, property index, whether the subject is said to have more)."""
    (_, _, subject), (_, _, obj) = name_spans(text)
    words = text.split()
    for (prop, more), adjectives in COMPARATIVES.items():
        if any(adjective in words for adjective in adjectives):
            return subject, obj, voken.PROPERTIES.index(prop), more
    assert "space" in words or "picture" in words, text
    return subject, obj, voken.PROPERTIES.index("size"), SPACE_WORDS[True] in words


@needs_wordnet
@needs_fashion_mnist
def test_grounded_facts_are_labelled_by_the_class_statistics(readouts: dict[str, Readout], fetched: dict[str, Path]):
    facts = readouts["grounded_facts"]
    assert facts.classes == ("false", "true")
    stats = class_statistics(*load_split(fetched["fashion_mnist"], "train"))
    assert stats.shape == (10, 2)
    assert (stats > 0).all()
    tokenizer = load_tokenizer(fetched["wordnet_corpus"])
    pairs = {}
    for name, split in (("train", facts.train), ("test", facts.test)):
        assert split["label"].mean() == 0.5
        pairs[name] = set()
        for ids, label in zip(split["input"], split["label"], strict=True):
            subject, obj, prop, more = fact_meaning(decode(tokenizer, ids))
            assert label == int((stats[subject, prop] > stats[obj, prop]) == more)
            assert voken.comparable(stats, subject, obj, prop)
            pairs[name].add((min(subject, obj), max(subject, obj)))
    assert pairs["train"].isdisjoint(pairs["test"])
    train_pairs, test_pairs = fact_pairs()
    assert pairs["test"] <= set(test_pairs)
    assert pairs["train"] <= set(train_pairs)
    assert len(test_pairs) == 3 * 7 + 3
    assert set(train_pairs).isdisjoint(test_pairs)
    # No training sentence names a held-out class; every test sentence names one.
    held_out = set(voken.fact_test_classes())
    assert len(held_out) == 3
    assert not any(held_out & set(pair) for pair in pairs["train"])
    assert all(held_out & set(pair) for pair in pairs["test"])
