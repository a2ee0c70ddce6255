"""What every text dataset of the project shares: one WordPiece vocabulary (trained by the
`wordnet_corpus` generator and read by the others from its tokenizer.json) and its special ids.
Token ids stay int64 from the files to the model."""

from __future__ import annotations

VOCAB_SIZE = 4096
"""WordPiece vocabulary size, the special tokens included."""

PAD, UNK, CLS, SEP, MASK = 0, 1, 2, 3, 4
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
"""In id order: a sequence is [CLS] tokens [SEP], padded with [PAD] (id 0) to its field's length."""

IGNORE = -100
"""A per-token target that no loss counts (padding, special tokens): torch's cross-entropy default."""

NO_CLASS = -1
"""`word_class` of a token that names no Fashion-MNIST class; padding of `items`."""
