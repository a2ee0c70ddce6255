"""The vokenization chain's downstream tasks on hand-made inputs: recall@k, the vokenizer's
retrieval against brute force, the clothing-word agreement, the written dataset's ids."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.data.text import CLS, IGNORE, NO_CLASS, PAD, SEP
from pipeline.models.voken.retrieval import recall_at, score_matrix
from pipeline.models.voken.vokenize import assign_vokens, clothing_agreement, image_embeddings, pool_index


class TinyMatcher(nn.Module):
    """A matcher with the interface the tasks use: random token and image embeddings."""

    def __init__(self, vocab: int = 50, dim: int = 8):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.context = nn.Linear(dim, dim)
        self.image = nn.Linear(16, dim)

    def real_tokens(self, tokens):
        return (tokens != PAD) & (tokens != CLS) & (tokens != SEP)

    def token_embeddings(self, tokens):
        embedded = self.embed(tokens)
        # A little context: each token sees its sentence's mean, so equal ids may get different vokens.
        return F.normalize(embedded + self.context(embedded.mean(1, keepdim=True)), dim=-1)

    def image_embeddings(self, images):
        return F.normalize(self.image(images.flatten(1)), dim=-1)


def test_recall_at_k_on_a_hand_made_matrix():
    scores = torch.tensor([[0.9, 0.1, 0.0],    # own image first
                           [0.8, 0.5, 0.1],    # own image second
                           [0.7, 0.6, 0.2]])   # own image third
    assert recall_at(scores, [1, 2, 3]) == pytest.approx({1: 1 / 3, 2: 2 / 3, 3: 1.0})
    # A tie with the match counts against it.
    assert recall_at(torch.tensor([[0.5, 0.5], [0.0, 1.0]]), [1]) == pytest.approx({1: 0.5})


def test_caption_scores_average_the_real_tokens_only():
    torch.manual_seed(0)
    matcher = TinyMatcher()
    tokens = torch.tensor([[CLS, 7, 9, SEP, PAD], [CLS, 11, SEP, PAD, PAD]])
    images = torch.randint(0, 255, (3, 1, 4, 4), dtype=torch.uint8)
    scores = score_matrix(matcher, tokens, images)
    embeddings = matcher.token_embeddings(tokens)
    pictures = matcher.image_embeddings(images.float() / 255)
    expected0 = (embeddings[0, 1:3] @ pictures.T).mean(0)
    assert torch.allclose(scores[0], expected0, atol=1e-5)
    assert scores.shape == (2, 3)


def test_vokenizer_matches_brute_force_and_ignores_specials():
    torch.manual_seed(1)
    matcher = TinyMatcher()
    pool = torch.randint(0, 255, (40, 1, 4, 4), dtype=torch.uint8)
    tokens = torch.randint(5, 50, (30, 10))
    tokens[:, 0], tokens[:, -3], tokens[:, -2:] = CLS, SEP, PAD
    pictures = image_embeddings(matcher, pool)
    vokens = assign_vokens(matcher, tokens, pool_index(pictures), batch_size=7)
    brute = (matcher.token_embeddings(tokens) @ pictures.T).argmax(-1)
    real = matcher.real_tokens(tokens)
    assert vokens.dtype == torch.int64
    assert torch.equal(vokens[real], brute[real])
    assert (vokens[~real] == IGNORE).all()


def test_clothing_agreement_and_its_chance():
    pool_items = torch.tensor([[0, NO_CLASS], [1, 2], [1, NO_CLASS], [3, NO_CLASS]])
    word_class = torch.tensor([[NO_CLASS, 1, 1, 0, NO_CLASS]])
    vokens = torch.tensor([[IGNORE, 1, 3, 0, 2]])
    agree, chance, named = clothing_agreement(vokens, word_class, pool_items)
    # Tokens naming classes 1, 1, 0 get images 1 (has 1), 3 (no), 0 (has 0).
    assert named == 3
    assert agree == pytest.approx(2 / 3)
    # Class 1 is in 2 of 4 pool images, class 0 in 1 of 4.
    assert chance == pytest.approx((0.5 + 0.5 + 0.25) / 3)


def test_faiss_index_is_exact_inner_product():
    rng = np.random.default_rng(0)
    base = torch.from_numpy(rng.normal(size=(100, 6)).astype(np.float32))
    queries = rng.normal(size=(20, 6)).astype(np.float32)
    _, found = pool_index(base).search(queries, 1)
    assert np.array_equal(found[:, 0], (queries @ base.numpy().T).argmax(1))


def test_a_token_of_a_type_the_matcher_never_read_gets_no_voken():
    torch.manual_seed(2)
    matcher = TinyMatcher()
    pool = torch.randint(0, 255, (10, 1, 4, 4), dtype=torch.uint8)
    tokens = torch.tensor([[CLS, 7, 8, 9, SEP, PAD]])
    known = torch.zeros(50, dtype=torch.bool)
    known[[7, 9]] = True
    vokens = assign_vokens(matcher, tokens, pool_index(image_embeddings(matcher, pool)), known=known)
    assert vokens[0, 2] == IGNORE
    assert (vokens[0, [1, 3]] >= 0).all()
    assert (vokens[0, [0, 4, 5]] == IGNORE).all()
