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
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from pipeline.data.fashion_mnist import CLASSES, load_split
from pipeline.data.registry import Readout
from pipeline.data.text import CLS, NO_CLASS, PAD, SEP, SPECIAL_TOKENS, UNK, VOCAB_SIZE
from pipeline.data.video import shrink
from pipeline.data.wordnet import (
    PARTS_OF_SPEECH,
    SUPERSENSES,
    is_supersense_test,
    noun_supersense_synsets,
    supersense_test_definitions,
    synsets,
    wordnet_dir,
)
from pipeline.errors import PipelineError

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


# --- Class names -------------------------------------------------------------------------------


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


# --- Scenes --------------------------------------------------------------------------------------

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


# --- Captions ------------------------------------------------------------------------------------

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


# --- Tokenizer -----------------------------------------------------------------------------------


def _normalizer() -> normalizers.Normalizer:
    return normalizers.BertNormalizer(lowercase=True)


def _is_punctuation(char: str) -> bool:
    """Punctuation as BERT's pre-tokeniser splits it off: ASCII symbols and Unicode's P* classes."""
    return (char.isascii() and not char.isalnum() and char.isprintable() and not char.isspace()) \
        or unicodedata.category(char).startswith("P")


def continuation_alphabet(sentences: Sequence[str]) -> list[str]:
    """'##c' for every character c that a word of `sentences` may hold once normalised (neither
    space nor punctuation, which the pre-tokeniser splits off), sorted."""
    chars = _normalizer().normalize_str("".join(sorted(set("".join(sentences)))))
    return sorted({f"##{c}" for c in chars if not c.isspace() and not _is_punctuation(c)})


def train_tokenizer(sentences: Sequence[str], vocab_size: int = VOCAB_SIZE) -> Tokenizer:
    """A WordPiece tokenizer of `vocab_size` ids, the special tokens first (ids 0..4), BERT's
    normalisation (lower case, accents stripped) and pre-tokenisation.

    Deterministic: the trainer numbers each '##c' (a character inside a word) in hash order, and
    breaks ties between merges of equal count by those ids, so its vocabulary and ids would differ
    from run to run. They are given to it after the special tokens, in sorted order, so each id is
    the same on every run; the trained vocabulary then makes a fresh tokenizer in which only the
    real special tokens are special."""
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, show_progress=False,
                                        special_tokens=[*SPECIAL_TOKENS, *continuation_alphabet(sentences)])
    trained = _bare_tokenizer(models.WordPiece(unk_token=SPECIAL_TOKENS[UNK]))
    trained.train_from_iterator(sentences, trainer)
    vocab = trained.get_vocab(with_added_tokens=False)
    tokenizer = _bare_tokenizer(models.WordPiece(vocab, unk_token=SPECIAL_TOKENS[UNK]))
    tokenizer.add_special_tokens(list(SPECIAL_TOKENS))
    if len(vocab) != vocab_size or any(tokenizer.token_to_id(t) != i for i, t in enumerate(SPECIAL_TOKENS)):
        raise ValueError(f"the tokenizer has {len(vocab)} ids, not {vocab_size} with the special tokens first "
                         "(too little text to train it?)")
    return tokenizer


def _bare_tokenizer(model: models.Model) -> Tokenizer:
    """`model` with BERT's normaliser, pre-tokeniser and WordPiece decoder; no post-processor
    (CLS and SEP are added by `encode`)."""
    tokenizer = Tokenizer(model)
    tokenizer.normalizer = _normalizer()
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    return tokenizer


def load_tokenizer(folder: Path) -> Tokenizer:
    """The project's tokenizer from a `wordnet_corpus` folder."""
    path = Path(folder) / TOKENIZER_FILE
    try:
        return Tokenizer.from_file(str(path))
    except Exception as err:  # tokenizers raises its own Exception for a missing or bad file
        raise PipelineError(f"{path}: cannot read the tokenizer ({err}); run `pipeline fetch wordnet_corpus`") from None


def decode(tokenizer: Tokenizer, ids: Sequence[int]) -> str:
    """The text of token ids, PAD, CLS and SEP left out."""
    return tokenizer.decode([int(i) for i in ids if i not in (PAD, CLS, SEP)], skip_special_tokens=False)


def encode(tokenizer: Tokenizer, texts: Sequence[str], length: int) -> tuple[np.ndarray, np.ndarray]:
    """Token ids and word classes, int64 [N, length] each: `[CLS] tokens [SEP]`, the tokens cut to
    fit, PAD after; a token's word class is the class whose name it is (part of), else NO_CLASS."""
    ids = np.full((len(texts), length), PAD, dtype=np.int64)
    classes = np.full((len(texts), length), NO_CLASS, dtype=np.int64)
    for n, (text, encoding) in enumerate(zip(texts, tokenizer.encode_batch(list(texts)), strict=True)):
        body = encoding.ids[:length - 2]
        ids[n, :len(body) + 2] = [CLS, *body, SEP]
        for start, end, cls in name_spans(text):
            for j, (first, last) in enumerate(encoding.offsets[:len(body)]):
                if start <= first and last <= end and last > first:
                    classes[n, j + 1] = cls
    return ids, classes


# --- Files ---------------------------------------------------------------------------------------


def _save(folder: Path, arrays: dict[str, np.ndarray]) -> None:
    for name, array in arrays.items():
        np.save(folder / f"{name}.npy", array, allow_pickle=False)


def _load(folder: Path, names: Sequence[str], dataset: str) -> dict[str, np.ndarray]:
    try:
        return {name: np.load(folder / f"{name}.npy", allow_pickle=False) for name in names}
    except (OSError, ValueError) as err:
        raise PipelineError(f"{folder}: cannot read {dataset} ({err}); "
                            f"run `pipeline fetch {dataset} --force`") from None


# --- wordnet_corpus ------------------------------------------------------------------------------


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


# --- fmnist_scenes -------------------------------------------------------------------------------


def make_scenes(images: np.ndarray, labels: np.ndarray, count: int, rng: np.random.Generator,
                fits: Callable[[str], bool] | None = None) -> tuple[list[Scene], list[str], np.ndarray]:
    """`count` scenes of items drawn from (images, labels), their captions and their pictures
    uint8 [count, 1, CANVAS, CANVAS]."""
    scenes, captions = [], []
    for _ in range(count):
        scenes.append(sample_scene(rng, labels))
        captions.append(describe(scenes[-1], rng, fits))
    pictures = np.stack([render(scene, images) for scene in scenes])[:, None]
    return scenes, captions, pictures


def generate_scenes(folder: Path, parents: dict[str, Path]) -> None:
    """Training scenes from Fashion-MNIST's training items, test scenes from its test items:
    pictures (x), caption ids (t), their word classes (w) and the item classes (i)."""
    tokenizer = load_tokenizer(parents["wordnet_corpus"])

    def fits(text: str) -> bool:
        return len(tokenizer.encode(text).ids) <= CAPTION_LENGTH - 2

    for split, source in (("train", "train"), ("test", "t10k")):
        images, labels = load_split(parents["fashion_mnist"], source)
        rng = np.random.default_rng(SEEDS[f"scenes_{split}"])
        scenes, captions, pictures = make_scenes(images, labels, SCENES[split], rng, fits)
        ids, classes = encode(tokenizer, captions, CAPTION_LENGTH)
        _save(folder, {f"x_{split}": pictures, f"t_{split}": ids, f"w_{split}": classes,
                       f"i_{split}": scene_items(scenes)})


def read_scenes(folder: Path) -> Readout:
    """Pictures uint8 [N, 1, 56, 56] (`input`), caption ids (`tokens`) and word classes
    (`word_class`) int64 [N, 24], item classes (`items`) int64 [N, 4]; no labels."""
    fields = {"x": "input", "t": "tokens", "w": "word_class", "i": "items"}
    arrays = _load(folder, [f"{key}_{split}" for split in ("train", "test") for key in fields], "fmnist_scenes")
    train, test = ({field: arrays[f"{key}_{split}"] for key, field in fields.items()} for split in ("train", "test"))
    return Readout(train, test)


# --- wordnet_supersense --------------------------------------------------------------------------


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


def _labelled_text(folder: Path, name: str, classes: tuple[str, ...]) -> Readout:
    """A labelled text dataset's splits: ids x_<split> as `input`, labels y_<split> as `label`."""
    arrays = _load(folder, ("x_train", "y_train", "x_test", "y_test"), name)
    return Readout({"input": arrays["x_train"], "label": arrays["y_train"]},
                   {"input": arrays["x_test"], "label": arrays["y_test"]}, classes)


# --- grounded_facts ------------------------------------------------------------------------------

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
