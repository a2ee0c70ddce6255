"""The contextual text encoder both voken families share: BERT-style embeddings (token + learned
position, LayerNorm, dropout) and a `torch.nn.TransformerEncoder` (post-LN, GELU, batch first)
that never attends to padding."""

from __future__ import annotations

import torch
from torch import nn

from pipeline.data.text import PAD, VOCAB_SIZE

INIT_STD = 0.02
"""BERT's initialisation: embeddings and linear weights ~ N(0, 0.02), biases 0."""


def bert_init(module: nn.Module) -> None:
    """BERT's initialisation of every Linear and Embedding under `module` (LayerNorms keep 1, 0)."""
    for sub in module.modules():
        if isinstance(sub, (nn.Linear, nn.Embedding)):
            nn.init.normal_(sub.weight, std=INIT_STD)
        if isinstance(sub, nn.Linear) and sub.bias is not None:
            nn.init.zeros_(sub.bias)


class TextTransformer(nn.Module):
    """Token ids [B, L] (int64, PAD = 0 after the sequence) -> hidden states [B, L, dim] (`hidden`),
    or sentence features [B, dim] (`forward`): the mean of the last layer over the non-PAD tokens
    ([CLS] and [SEP] included), so appending padding changes nothing."""

    def __init__(self, dim: int, layers: int, heads: int, ffn: int, dropout: float, max_length: int,
                 vocab_size: int = VOCAB_SIZE):
        super().__init__()
        self.tokens = nn.Embedding(vocab_size, dim)
        self.positions = nn.Embedding(max_length, dim)
        self.norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(dim, heads, ffn, dropout, activation="gelu", batch_first=True)
        self.transformer = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.out_dim = dim
        self.max_length = max_length
        bert_init(self)

    def hidden(self, ids: torch.Tensor) -> torch.Tensor:
        length = ids.shape[1]
        if length > self.max_length:
            raise ValueError(f"a sequence of {length} tokens is longer than the {self.max_length} positions "
                             "of the position embeddings (raise the spec's max_length)")
        positions = torch.arange(length, device=ids.device)
        x = self.dropout(self.norm(self.tokens(ids) + self.positions(positions)[None]))
        padding = ids == PAD
        # A row of padding only would attend to nothing (NaN): let its first position attend to itself.
        padding[:, 0] = False
        return self.transformer(x, src_key_padding_mask=padding)

    def pool(self, hidden: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """Mean of `hidden` [B, L, D] over the non-PAD positions of `ids` (zeros for a row of padding)."""
        real = (ids != PAD).to(hidden.dtype)[..., None]
        return (hidden * real).sum(dim=1) / real.sum(dim=1).clamp_min(1)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.pool(self.hidden(ids), ids)
