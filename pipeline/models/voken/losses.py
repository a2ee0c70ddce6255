"""The vokenization losses as plain functions: the token-image hinge ranking loss of the matcher,
BERT's masking of token ids, and the cross-entropies of the language model that count only the
positions with a target (IGNORE elsewhere)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from pipeline.data.text import CLS, IGNORE, MASK, NO_CLASS, PAD, SEP, SPECIAL_TOKENS, UNK, VOCAB_SIZE

FIRST_WORD = len(SPECIAL_TOKENS)
"""The first id that is not a special token: masking draws its random tokens from [FIRST_WORD, vocab)."""


def true_negatives(tokens: torch.Tensor, word_class: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """Which other items of a batch may serve as negatives for each token [B, L, B] (bool): not the
    token's own item, not an item whose caption is the very same, and, for a token naming a
    clothing class, not an item whose scene holds that class too (a sneaker is as relevant to every
    scene with a sneaker). tokens, word_class [B, L]; items [B, K] (class per item, NO_CLASS pad)."""
    b = tokens.shape[0]
    same_caption = (tokens[:, None, :] == tokens[None, :, :]).all(dim=-1)  # [B, B], the diagonal included
    shows = (word_class[:, :, None, None] == items[None, None, :, :]).any(dim=-1)  # [B, L, B]
    shows &= (word_class != NO_CLASS)[:, :, None]
    return ~same_caption[:, None, :].expand(b, tokens.shape[1], b) & ~shows


def token_image_hinge(scores: torch.Tensor, real: torch.Tensor, margin: float,
                      negatives: torch.Tensor | None = None) -> torch.Tensor:
    """The token-image hinge ranking loss over in-batch negatives (Tan & Bansal 2020).

    scores [B, L, B]: scores[b, i, c] = s(t_bi, v_c), the relevance of token i of caption b to image
    c; caption b belongs to image b. real [B, L]: the tokens that count (not PAD, [CLS], [SEP]).
    For every real token t_bi, with positive s+ = s(t_bi, v_b), and every other item c != b of the
    batch, two hinges:

    - a negative image: max(0, margin - s+ + s(t_bi, v_c));
    - a negative caption: max(0, margin - s+ + r(c, b)), where r(c, b) is the MEAN relevance of
      caption c's real tokens to image b (not the token of caption c at the same position i: that
      is often padding, or an unrelated word of a sentence of another shape; the mean is defined
      for every caption and is exactly the caption-to-image retrieval score).

    Loss = the mean of the first over the (real token, negative) pairs + the mean of the second
    over the same pairs. Zero (with a graph) when the batch has no negatives or no real tokens.
    `negatives` [B, L, B] (bool) narrows which c count for each token (see `true_negatives`);
    default: every c != b."""
    b = scores.shape[0]
    if scores.shape != (b, real.shape[1], b):
        raise ValueError(f"scores must be [B, L, B] for real tokens [B, L] (got {tuple(scores.shape)} and "
                         f"{tuple(real.shape)})")
    items = torch.arange(b, device=scores.device)
    positive = scores[items, :, items]  # [B, L]: s(t_bi, v_b)
    caption = caption_scores(scores, real)  # [B, B]: r(c, b) at [c, b]
    negative = ~torch.eye(b, dtype=torch.bool, device=scores.device)[:, None, :]  # [b, 1, c]: c != b
    if negatives is not None:
        negative = negative & negatives
    pairs = (real[:, :, None] & negative).to(scores.dtype)  # [B, L, B]
    count = pairs.sum()
    if count == 0:
        return scores.sum() * 0
    wrong_image = F.relu(margin - positive[:, :, None] + scores)
    wrong_caption = F.relu(margin - positive[:, :, None] + caption.t()[:, None, :])  # r(c, b) at [b, :, c]
    return ((wrong_image + wrong_caption) * pairs).sum() / count


def caption_scores(scores: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Caption-to-image scores [Nc, Ni] from token relevances [Nc, L, Ni]: the mean over each
    caption's real tokens (0 for a caption without one)."""
    weight = real.to(scores.dtype)
    return torch.einsum("bic,bi->bc", scores, weight) / weight.sum(dim=1, keepdim=True).clamp_min(1)


def maskable(ids: torch.Tensor) -> torch.Tensor:
    """The tokens MLM may choose: every id but the special tokens ([PAD], [UNK], [CLS], [SEP], [MASK])."""
    special = torch.tensor([PAD, UNK, CLS, SEP, MASK], device=ids.device)
    return ~torch.isin(ids, special)


def mask_tokens(ids: torch.Tensor, generator: torch.Generator | None = None, mask_prob: float = 0.15,
                vocab_size: int = VOCAB_SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masking: each maskable token (see `maskable`) is chosen with probability mask_prob;
    a chosen token becomes [MASK] (80%), a random non-special token (10%) or stays (10%).
    Returns (inputs [B, L]: the ids so changed, labels [B, L]: the original id where chosen,
    IGNORE elsewhere). The draws come from `generator` (on its own device; the global RNG of ids'
    device when None) and have fixed shapes, so one generator state gives one masking."""
    device = generator.device if generator is not None else ids.device
    choose = torch.rand(ids.shape, generator=generator, device=device).to(ids.device)
    action = torch.rand(ids.shape, generator=generator, device=device).to(ids.device)
    random = torch.randint(FIRST_WORD, vocab_size, ids.shape, generator=generator, device=device).to(ids.device)
    chosen = maskable(ids) & (choose < mask_prob)
    labels = torch.where(chosen, ids, torch.full_like(ids, IGNORE))
    inputs = torch.where(chosen & (action < 0.8), torch.full_like(ids, MASK), ids)
    inputs = torch.where(chosen & (action >= 0.8) & (action < 0.9), random, inputs)
    return inputs, labels


def ignoring_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of logits [..., C] and targets [...], averaged over the targets that are not
    IGNORE; zero (with a graph) when every target is IGNORE."""
    logits, targets = logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)
    counted = targets != IGNORE
    if not counted.any():
        return logits.sum() * 0
    return F.cross_entropy(logits[counted], targets[counted])


def voken_loss(logits: torch.Tensor, vokens: torch.Tensor) -> torch.Tensor:
    """The voken classification loss: cross-entropy of logits [..., V] against the voken of each
    token [...], averaged over the real tokens; padding and special positions (IGNORE) do not count."""
    return ignoring_cross_entropy(logits, vokens)


def random_voken_map(vokens: torch.Tensor, seed: int, pool: int, vocab_size: int = VOCAB_SIZE) -> torch.Tensor:
    """The `vokens: random` control: for each token TYPE t, a seeded random permutation of the
    voken pool, v -> (a_t v + b_t) mod pool with a_t coprime to pool; returned as int64
    [vocab_size, 2] rows (a_t, b_t), special tokens (0, IGNORE). Applied to the matched vokens
    (see `randomised_vokens`), it keeps everything about them that one token type alone tells:
    which positions have a voken, how many distinct vokens a type gets and how often, and how they
    vary with context (given the type, the map is one-to-one). What it breaks is what grounds them:
    that different words (synonyms; "dark" and a dark item) share images. `vokens` (the matched
    ones) is checked to lie in the pool."""
    counted = vokens[vokens != IGNORE]
    if counted.numel() == 0:
        raise ValueError("no matched vokens to permute (every target is IGNORE)")
    if counted.min() < 0 or counted.max() >= pool:
        raise ValueError(f"voken ids must be in [0, {pool}) or IGNORE ({IGNORE}); got {int(counted.min())}.."
                         f"{int(counted.max())}")
    generator = torch.Generator().manual_seed(seed)
    coprime = torch.tensor([a for a in range(1, max(pool, 2)) if math.gcd(a, pool) == 1] or [1])
    multipliers = coprime[torch.randint(len(coprime), (vocab_size,), generator=generator)]
    offsets = torch.randint(pool, (vocab_size,), generator=generator)
    table = torch.stack([multipliers, offsets], dim=1).long()
    table[:FIRST_WORD] = torch.tensor([0, IGNORE])
    return table


def randomised_vokens(ids: torch.Tensor, vokens: torch.Tensor, table: torch.Tensor, pool: int) -> torch.Tensor:
    """The control's targets [B, L]: each matched voken v of a token of type t mapped to
    (a_t v + b_t) mod pool (see `random_voken_map`); IGNORE stays IGNORE."""
    rows = table[ids]
    mapped = (rows[..., 0] * vokens.clamp_min(0) + rows[..., 1]) % pool
    return torch.where(vokens != IGNORE, mapped, torch.full_like(vokens, IGNORE))
