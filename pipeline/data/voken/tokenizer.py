"""The project's one WordPiece tokenizer: trained (deterministically) on the corpus, loaded from a
`wordnet_corpus` folder, and texts encoded as `[CLS] tokens [SEP]` ids with their word classes."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

from pipeline.data.text import CLS, NO_CLASS, PAD, SEP, SPECIAL_TOKENS, UNK, VOCAB_SIZE
from pipeline.data.voken.constants import TOKENIZER_FILE
from pipeline.data.voken.names import name_spans
from pipeline.errors import PipelineError
from pipeline.extras import require

if TYPE_CHECKING:
    from tokenizers import Tokenizer, models, normalizers


def _tokenizers() -> ModuleType:
    """The `tokenizers` library (the voken extra), imported when a tokenizer is made or read."""
    return require("tokenizers", "voken", "the text datasets' WordPiece tokenizer")


def _normalizer() -> normalizers.Normalizer:
    return _tokenizers().normalizers.BertNormalizer(lowercase=True)


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
    tokenizers = _tokenizers()
    trainer = tokenizers.trainers.WordPieceTrainer(vocab_size=vocab_size, show_progress=False,
                                        special_tokens=[*SPECIAL_TOKENS, *continuation_alphabet(sentences)])
    trained = _bare_tokenizer(tokenizers.models.WordPiece(unk_token=SPECIAL_TOKENS[UNK]))
    trained.train_from_iterator(sentences, trainer)
    vocab = trained.get_vocab(with_added_tokens=False)
    tokenizer = _bare_tokenizer(tokenizers.models.WordPiece(vocab, unk_token=SPECIAL_TOKENS[UNK]))
    tokenizer.add_special_tokens(list(SPECIAL_TOKENS))
    if len(vocab) != vocab_size or any(tokenizer.token_to_id(t) != i for i, t in enumerate(SPECIAL_TOKENS)):
        raise ValueError(f"the tokenizer has {len(vocab)} ids, not {vocab_size} with the special tokens first "
                         "(too little text to train it?)")
    return tokenizer


def _bare_tokenizer(model: models.Model) -> Tokenizer:
    """`model` with BERT's normaliser, pre-tokeniser and WordPiece decoder; no post-processor
    (CLS and SEP are added by `encode`)."""
    tokenizers = _tokenizers()
    tokenizer = tokenizers.Tokenizer(model)
    tokenizer.normalizer = _normalizer()
    tokenizer.pre_tokenizer = tokenizers.pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = tokenizers.decoders.WordPiece()
    return tokenizer


def load_tokenizer(folder: Path) -> Tokenizer:
    """The project's tokenizer from a `wordnet_corpus` folder."""
    path = Path(folder) / TOKENIZER_FILE
    tokenizers = _tokenizers()
    try:
        return tokenizers.Tokenizer.from_file(str(path))
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
