"""A reader of Princeton WordNet 3.0's data files (Debian's wordnet-base): each synset's words,
lexicographer file and gloss, the gloss split into its definition and its example sentences.

The text datasets of the vokenization chain are made from it: the language model's corpus
(pipeline.data.voken.corpus) and the noun supersense task (pipeline.data.voken.supersense). The
folder is $WORDNET_DIR, else /usr/share/wordnet; a missing one is a PipelineError that says how to
install it."""

from __future__ import annotations

import os
import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import PipelineError

WORDNET_ENV = "WORDNET_DIR"
DEFAULT_WORDNET_DIR = Path("/usr/share/wordnet")
PARTS_OF_SPEECH = ("noun", "verb", "adj", "adv")
"""The four data files (data.<part>), in the order the corpus reads them."""

SUPERSENSES = (
    "noun.Tops", "noun.act", "noun.animal", "noun.artifact", "noun.attribute", "noun.body", "noun.cognition",
    "noun.communication", "noun.event", "noun.feeling", "noun.food", "noun.group", "noun.location", "noun.motive",
    "noun.object", "noun.person", "noun.phenomenon", "noun.plant", "noun.possession", "noun.process",
    "noun.quantity", "noun.relation", "noun.shape", "noun.state", "noun.substance", "noun.time",
)
"""The noun lexicographer files 03..28 in file order: supersense index = lex_filenum - 3."""
FIRST_NOUN_FILE = 3

TEST_BUCKETS = 10
"""A noun synset is in the supersense test split when crc32 of its 8-digit offset is 0 mod this:
a fixed ~10% that both the supersense task and the corpus (which leaves those definitions out) use."""

_ADJECTIVE_MARKER = re.compile(r"\((?:a|p|ip)\)$")
_EXAMPLE = re.compile(r'"([^"]*)"')


@dataclass(frozen=True)
class Synset:
    """One line of a data file: its byte offset (the synset's id within its part of speech), its
    lexicographer file, type (n, v, a, s, r), words (underscores for spaces), its definition (the
    gloss before the first example; several senses stay joined by '; ') and its example sentences."""

    offset: int
    lex_filenum: int
    ss_type: str
    words: tuple[str, ...]
    definition: str
    examples: tuple[str, ...]

    @property
    def supersense(self) -> int | None:
        """Index into SUPERSENSES for a noun synset; None for the other parts of speech."""
        if self.ss_type != "n":
            return None
        return self.lex_filenum - FIRST_NOUN_FILE


def wordnet_dir() -> Path:
    """The WordNet folder ($WORDNET_DIR, else /usr/share/wordnet), checked to hold the data files."""
    folder = Path(os.environ.get(WORDNET_ENV) or DEFAULT_WORDNET_DIR)
    missing = [f"data.{part}" for part in PARTS_OF_SPEECH if not (folder / f"data.{part}").is_file()]
    if missing:
        raise PipelineError(f"WordNet is missing: {folder} has no {', '.join(missing)}; install Debian's "
                            f"wordnet-base (apt-get install wordnet-base) or set {WORDNET_ENV} to a folder "
                            "holding WordNet 3.0's data.* files")
    return folder


def split_gloss(gloss: str) -> tuple[str, tuple[str, ...]]:
    """(definition, examples) of a gloss: the definition is the text before the first quoted
    example (its trailing '; ' removed), the examples are the quoted sentences after it."""
    start = gloss.find('"')
    if start < 0:
        return gloss.strip().rstrip(";").strip(), ()
    definition = gloss[:start].strip().rstrip(";").strip()
    examples = tuple(text.strip() for text in _EXAMPLE.findall(gloss[start:]) if text.strip())
    return definition, examples


def parse_line(line: str) -> Synset:
    """A synset from its data-file line: `offset lex_filenum ss_type w_cnt word lex_id ... p_cnt
    pointers... [frames] | gloss` (w_cnt in hex; adjective words may carry a marker such as
    '(a)', dropped)."""
    head, _, gloss = line.partition(" | ")
    fields = head.split()
    count = int(fields[3], 16)
    words = tuple(_ADJECTIVE_MARKER.sub("", fields[4 + 2 * i]) for i in range(count))
    definition, examples = split_gloss(gloss)
    return Synset(int(fields[0]), int(fields[1]), fields[2], words, definition, examples)


def synsets(part: str, folder: Path | None = None) -> Iterator[Synset]:
    """Every synset of data.<part> (noun, verb, adj, adv) in file order; the licence header (lines
    starting with two spaces) is skipped."""
    path = (folder or wordnet_dir()) / f"data.{part}"
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            for line in handle:
                if not line.startswith("  ") and line.strip():
                    yield parse_line(line.rstrip("\n"))
    except OSError as err:
        raise PipelineError(f"{path}: cannot read it ({err}); reinstall wordnet-base or set {WORDNET_ENV}") from None


def is_supersense_test(offset: int) -> bool:
    """Whether a noun synset (by offset) belongs to the supersense test split (see TEST_BUCKETS)."""
    return zlib.crc32(f"{offset:08d}".encode()) % TEST_BUCKETS == 0


def has_supersense(synset: Synset) -> bool:
    """Whether a synset is an example of the supersense task: a noun synset with a definition."""
    return bool(synset.definition) and synset.supersense is not None and 0 <= synset.supersense < len(SUPERSENSES)


def noun_supersense_synsets(folder: Path | None = None) -> list[Synset]:
    """The noun synsets of the supersense task (every noun synset of WordNet 3.0), in file order."""
    return [s for s in synsets("noun", folder) if has_supersense(s)]


def supersense_test_definitions(nouns: Iterable[Synset]) -> set[str]:
    """The definitions of the supersense test split among `nouns`: text no corpus sentence may be."""
    return {s.definition for s in nouns if has_supersense(s) and is_supersense_test(s.offset)}
