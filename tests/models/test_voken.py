"""Vokenization: the hinge loss by hand, BERT's masking, the voken loss's ignored positions, the
LM encoder's indifference to padding, the random-voken control, and real training steps of the
matcher and the language model (the matcher learning a tiny problem)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pydantic
import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from pipeline import plugins
from pipeline.capabilities import Encoder
from pipeline.data.datamodule import Splits, TensorDataModule
from pipeline.data.text import CLS, IGNORE, MASK, PAD, SEP, UNK, VOCAB_SIZE
from pipeline.models.backbones import ConvNet
from pipeline.models.voken import VokenLMSpec, VokenMatcherSpec
from pipeline.models.voken.lm import VokenLM
from pipeline.models.voken.losses import (
    mask_tokens,
    random_voken_map,
    randomised_vokens,
    token_image_hinge,
    true_negatives,
    voken_loss,
)
from pipeline.models.voken.matcher import VokenMatcher, real_tokens
from pipeline.models.voken.plugin import LanguageModel
from pipeline.spec.experiment import DataSpec, TrainSpec

MATCHER = VokenMatcherSpec(kind="voken_matcher", dim=32, layers=1, heads=2, ffn=64, joint_dim=16,
                           image_widths=[8, 16], dropout=0.0)
LM = VokenLMSpec(kind="voken_lm", dim=32, layers=2, heads=2, ffn=64)
POOL = 12  # vokens in the pool of the LM's tiny corpus


def _captions(n: int, length: int, generator: torch.Generator, min_words: int = 3) -> torch.Tensor:
    """[CLS] words [SEP] then PAD, with a random number of words."""
    ids = torch.full((n, length), PAD, dtype=torch.long)
    for row in range(n):
        words = int(torch.randint(min_words, length - 1, (1,), generator=generator))
        ids[row, 0] = CLS
        ids[row, 1: words + 1] = torch.randint(5, VOCAB_SIZE, (words,), generator=generator)
        ids[row, words + 1] = SEP
    return ids


def _corpus(n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    ids = _captions(n, 32, generator)
    ids[ids >= 5] = ids[ids >= 5] % 40 + 5  # a small vocabulary, so each type recurs
    vokens = torch.where(ids >= 5, ids % POOL, torch.full_like(ids, IGNORE))
    return {"input": ids, "vokens": vokens, "word_class": torch.full_like(ids, -1)}


def _lm_splits() -> Splits:
    generator = torch.Generator().manual_seed(0)
    return Splits(train=_corpus(48, generator), val=_corpus(16, generator), test=_corpus(16, generator),
                  classes=tuple(f"image{i}" for i in range(POOL)))


def _scenes(n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    return {"input": torch.randint(0, 256, (n, 1, 56, 56), generator=generator, dtype=torch.uint8),
            "tokens": _captions(n, 24, generator), "word_class": torch.full((n, 24), -1),
            "items": torch.zeros(n, 4, dtype=torch.long)}


def _fit(model, splits, **trainer):
    data = TensorDataModule(DataSpec(batch_size=8), seed=0, splits=splits)
    options = dict(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                   enable_model_summary=False)
    pl.Trainer(**{**options, **trainer}).fit(model, datamodule=data)
    return model


def _run_spec(seed: int):
    """What `phases` reads of an experiment spec."""
    return SimpleNamespace(data=DataSpec(batch_size=8), seed=seed, train=TrainSpec(max_epochs=1))


def _finite_gradients(model) -> None:
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads
    assert all(torch.isfinite(g).all() for g in grads)


def test_the_registry_builds_both_kinds():
    assert plugins.models()["voken_matcher"].load_class() is VokenMatcher
    assert plugins.models()["voken_lm"].load_class() is VokenLM
    assert plugins.models()["voken_matcher"].takes_encoder
    assert plugins.models()["voken_matcher"].modalities == ("image-text",)
    assert plugins.models()["voken_lm"].provides == (Encoder, LanguageModel)


def test_specs_check_heads_and_layers():
    with pytest.raises(pydantic.ValidationError, match="multiple of heads"):
        VokenLMSpec(kind="voken_lm", dim=30, heads=4)
    with pytest.raises(pydantic.ValidationError):
        VokenLMSpec(kind="voken_lm", layers=1)
    with pytest.raises(pydantic.ValidationError):
        VokenMatcherSpec(kind="voken_matcher", layers=5)
    spec = VokenLMSpec(kind="voken_lm")
    assert (spec.dim, spec.layers, spec.mask_prob, spec.vokens, spec.voken_weight) == (128, 2, 0.15, "matched", 1.0)
    assert VokenMatcherSpec(kind="voken_matcher").margin == 0.5


# ------------------------------------------------------------------ the hinge loss


def _hand_scores() -> tuple[torch.Tensor, torch.Tensor]:
    """Two captions of 3 positions, two images; scores[b, i, c] = s(t_bi, v_c). Caption 0's tokens
    1 and 2 are real, caption 1's token 1 only; the 9s sit at positions that must not count."""
    scores = torch.tensor([[[9.0, 9.0], [0.8, 0.5], [0.6, 0.4]],
                           [[9.0, 9.0], [0.3, 0.9], [9.0, 9.0]]])
    real = torch.tensor([[False, True, True], [False, True, False]])
    return scores, real


def test_the_hinge_loss_by_hand():
    scores, real = _hand_scores()
    # Mean relevance of each caption's real tokens: caption 0 -> (0.7, 0.45), caption 1 -> (0.3, 0.9).
    # Caption 0, token 1 (s+ 0.8): image 1: 0.5 - 0.8 + 0.5 = 0.2; caption 1 on image 0: 0.5 - 0.8 + 0.3 -> 0.
    # Caption 0, token 2 (s+ 0.6): image 1: 0.5 - 0.6 + 0.4 = 0.3; caption 1 on image 0: 0.5 - 0.6 + 0.3 = 0.2.
    # Caption 1, token 1 (s+ 0.9): image 0: 0.5 - 0.9 + 0.3 -> 0; caption 0 on image 1: 0.5 - 0.9 + 0.45 = 0.05.
    # Three (token, negative) pairs: (0.2 + 0.3 + 0) / 3 + (0 + 0.2 + 0.05) / 3.
    loss = token_image_hinge(scores, real, margin=0.5)
    assert loss.item() == pytest.approx(0.75 / 3, abs=1e-6)


def test_the_hinge_loss_is_zero_when_positives_win_by_more_than_the_margin():
    scores, real = _hand_scores()
    # The smallest gap between a positive and a negative above is 0.2 (caption 0, token 2 vs image 1).
    assert token_image_hinge(scores, real, margin=0.19).item() == 0
    assert token_image_hinge(scores, real, margin=0.21).item() == pytest.approx(0.01 / 3, abs=1e-6)
    # No negatives in a batch of one: nothing to rank.
    assert token_image_hinge(scores[:1, :, :1], real[:1], margin=0.5).item() == 0


def test_the_hinge_loss_pushes_positives_up_and_negatives_down():
    scores, real = _hand_scores()
    scores.requires_grad_(True)
    token_image_hinge(scores, real, margin=0.5).backward()
    assert scores.grad[0, 1, 0] < 0 and scores.grad[0, 1, 1] > 0  # descent raises s+, lowers the negative
    assert torch.all(scores.grad[0, 0] == 0) and torch.all(scores.grad[1, 2] == 0)  # special positions


# ------------------------------------------------------------------ masking and the voken loss


def test_mask_tokens_masks_15_percent_of_real_tokens_80_10_10():
    generator = torch.Generator().manual_seed(0)
    ids = _captions(1000, 64, generator)
    ids[:, 5] = UNK
    special = (ids == PAD) | (ids == CLS) | (ids == SEP) | (ids == UNK)
    inputs, labels = mask_tokens(ids, torch.Generator().manual_seed(1), 0.15)
    chosen = labels != IGNORE
    assert not (chosen & special).any()
    assert torch.equal(inputs[special], ids[special])
    assert torch.equal(labels[chosen], ids[chosen])
    assert torch.equal(inputs[~chosen], ids[~chosen])
    assert chosen.sum() / (~special).sum() == pytest.approx(0.15, abs=0.01)
    masked = (inputs[chosen] == MASK).float().mean()
    kept = (inputs[chosen] == ids[chosen]).float().mean()
    replaced = inputs[chosen][(inputs[chosen] != MASK) & (inputs[chosen] != ids[chosen])]
    assert masked == pytest.approx(0.8, abs=0.02) and kept == pytest.approx(0.1, abs=0.015)
    assert len(replaced) / chosen.sum() == pytest.approx(0.1, abs=0.015)
    assert (replaced >= 5).all() and (replaced < VOCAB_SIZE).all()
    # One generator state, one masking.
    again = mask_tokens(ids, torch.Generator().manual_seed(1), 0.15)
    assert torch.equal(again[0], inputs) and torch.equal(again[1], labels)


def test_the_voken_loss_counts_only_real_tokens():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 6, POOL, generator=generator)
    vokens = torch.randint(0, POOL, (3, 6), generator=generator)
    vokens[:, 0] = IGNORE
    vokens[1, 3:] = IGNORE
    loss = voken_loss(logits, vokens)
    real = vokens != IGNORE
    assert loss.item() == pytest.approx(F.cross_entropy(logits[real], vokens[real]).item())
    changed = logits.clone()
    changed[~real] = 100 * torch.randn_like(changed[~real])
    assert voken_loss(changed, vokens).item() == pytest.approx(loss.item())
    assert voken_loss(logits, torch.full_like(vokens, IGNORE)).item() == 0


# ------------------------------------------------------------------ the language model


def test_the_lm_sentence_features_ignore_appended_padding():
    torch.manual_seed(0)
    model = VokenLM(LM, TrainSpec(), (16,), POOL).eval()
    ids = _captions(5, 16, torch.Generator().manual_seed(0))
    longer = torch.cat([ids, torch.full((5, 8), PAD)], dim=1)
    with torch.no_grad():
        features, padded = model.encoder(ids), model.encoder(longer)
        hidden, hidden_padded = model.hidden(ids), model.hidden(longer)
    assert features.shape == (5, model.encoder.out_dim) == (5, 32)
    assert torch.allclose(features, padded, atol=1e-5)
    real = ids != PAD
    assert torch.allclose(hidden[real], hidden_padded[:, :16][real], atol=1e-5)
    assert model.encoder(ids).dtype == torch.float32


def test_the_random_control_permutes_each_token_types_vokens_and_keeps_their_spread():
    pool = 10
    ids = torch.tensor([[CLS, 7, 7, 9, 7, 9, SEP], [CLS, 9, 7, 7, 7, SEP, PAD]])
    vokens = torch.tensor([[IGNORE, 3, 3, 7, 1, 3, IGNORE], [IGNORE, 7, 3, 3, 2, IGNORE, IGNORE]])
    first, again, other = (random_voken_map(vokens, seed, pool) for seed in (0, 0, 1))
    assert first.shape == (VOCAB_SIZE, 2) and torch.equal(first, again) and not torch.equal(first, other)
    assert torch.all(first[:5, 1] == IGNORE)
    assert all(math.gcd(int(a), pool) == 1 for a in first[5:, 0])  # a_t coprime to the pool: one-to-one
    mapped = randomised_vokens(ids, vokens, first, pool)
    assert torch.equal(mapped == IGNORE, vokens == IGNORE) and mapped.max() < pool
    # Per token type, the same matched voken always maps to the same random one, and different
    # matched vokens to different ones: each type's spread over contexts is kept.
    for token in (7, 9):
        here = (ids == token) & (vokens != IGNORE)
        pairs = set(zip(vokens[here].tolist(), mapped[here].tolist(), strict=True))
        assert len({v for v, _ in pairs}) == len(pairs) == len({m for _, m in pairs})
    with pytest.raises(ValueError, match="in \\[0, 10\\)"):
        random_voken_map(torch.tensor([[12]]), 0, pool)


def test_the_hinge_loss_takes_no_scene_showing_a_tokens_class_or_the_same_caption_as_a_negative():
    tokens = torch.tensor([[CLS, 10, 11, SEP], [CLS, 12, SEP, PAD], [CLS, 10, 11, SEP]])
    word_class = torch.tensor([[-1, 4, -1, -1], [-1, 2, -1, -1], [-1, 4, -1, -1]])
    items = torch.tensor([[4, -1], [2, 4], [4, 7]])
    allowed = true_negatives(tokens, word_class, items)
    # Caption 0's class-4 token: scene 1 holds a 4 too, caption 2 is the same caption: no negative.
    assert allowed[0, 1].tolist() == [False, False, False]
    # Its other word (no class) may take scene 1, not the identical caption 2.
    assert allowed[0, 2].tolist() == [False, True, False]
    # Caption 1's class-2 token: neither scene 0 nor 2 holds a 2.
    assert allowed[1, 1].tolist() == [True, False, True]
    scores = torch.zeros(3, 4, 3)
    real = real_tokens(tokens)
    # With no negative left for caption 0's tokens but the one word against scene 1, only those count.
    everything = token_image_hinge(scores, real, 0.5)
    narrowed = token_image_hinge(scores, real, 0.5, allowed)
    assert everything == pytest.approx(1.0) and narrowed == pytest.approx(1.0)  # each pair: 2 x 0.5
    # A class-4 token scored high on scene 1, which shows a 4: not a wrong image once masked. It only
    # raises caption 0's mean relevance to scene 1, r(0, 1) = 2.5, which caption 1's token (class 2)
    # meets as a wrong caption: 0.5 + 3.0 for that pair, 1.0 for the three others: 6.5 / 4.
    scores[0, 1, 1] = 5.0
    assert token_image_hinge(scores, real, 0.5, allowed) == pytest.approx(6.5 / 4)
    assert token_image_hinge(scores, real, 0.5) > 6.5 / 4


def test_phases_builds_the_random_vokens_as_a_saved_buffer():
    splits = _lm_splits()
    spec = LM.model_copy(update={"vokens": "random"})
    model = VokenLM(spec, TrainSpec(), (32,), POOL)
    with pytest.raises(RuntimeError, match="phases"):
        model.step({"input": splits.train["input"][:4], "vokens": splits.train["vokens"][:4]})
    phases = model.phases(_run_spec(3), splits)
    assert len(phases) == 1
    assert torch.equal(model.random_vokens, random_voken_map(splits.train["vokens"], 3, POOL))
    assert "random_vokens" in model.state_dict()
    ids, vokens = splits.train["input"][:4], splits.train["vokens"][:4]
    targets = model.voken_targets({"input": ids, "vokens": vokens})
    assert torch.equal(targets, randomised_vokens(ids, vokens, model.random_vokens, POOL))
    other = VokenLM(spec, TrainSpec(), (32,), POOL)
    other.phases(_run_spec(4), splits)
    assert not torch.equal(other.random_vokens, model.random_vokens)


def test_the_variants_of_one_seed_start_alike_whether_or_not_they_have_a_voken_head():
    built = {}
    for vokens in ("none", "matched"):
        torch.manual_seed(5)
        model = VokenLM(LM.model_copy(update={"vokens": vokens}), TrainSpec(), (32,), POOL)
        built[vokens] = (model.encoder.state_dict(), torch.rand(3))  # the weights, then the next draw
    assert all(torch.equal(a, b) for a, b in zip(built["none"][0].values(), built["matched"][0].values(),
                                                  strict=True))
    assert torch.equal(built["none"][1], built["matched"][1])


@pytest.mark.parametrize("vokens", ["matched", "random", "none"])
def test_a_training_step_of_the_lm_gives_finite_gradients(vokens):
    torch.manual_seed(0)
    splits = _lm_splits()
    model = VokenLM(LM.model_copy(update={"vokens": vokens}), TrainSpec(), (32,), POOL)
    model.phases(_run_spec(0), splits)
    batch = {name: values[:8] for name, values in splits.train.items()}
    out = model.step(batch)
    out["loss"].backward()
    _finite_gradients(model)
    assert model.encoder.tokens.weight.grad.abs().sum() > 0
    if vokens == "none":
        assert model.voken_head is None and "voken_loss" not in out
        assert out["loss"].item() == out["mlm_loss"].item()
        model.step({"input": batch["input"]})  # reads no vokens
    else:
        assert out["loss"].item() == pytest.approx(out["mlm_loss"].item() + out["voken_loss"].item())
        assert all(p.grad is not None for p in model.voken_head.parameters())


def test_the_lm_trains_and_validates_with_lightning():
    torch.manual_seed(0)
    model = VokenLM(LM, TrainSpec(max_epochs=1), (32,), POOL)
    _fit(model, _lm_splits(), fast_dev_run=2)
    assert {"train/loss", "train/mlm_loss", "train/voken_loss", "val/mlm_accuracy",
            "val/voken_accuracy"} <= set(model.trainer.callback_metrics)
    assert model.plot_groups()["validation_accuracy"][1] == ["val/mlm_accuracy", "val/voken_accuracy"]


def test_validation_masks_each_batch_the_same_every_time():
    torch.manual_seed(0)
    model = VokenLM(LM, TrainSpec(), (32,), POOL).eval()
    batch = {name: values[:8] for name, values in _lm_splits().val.items()}
    seeded = [model.step(batch, torch.Generator().manual_seed(5)) for _ in range(2)]
    assert seeded[0]["mlm_loss"].item() == seeded[1]["mlm_loss"].item()
    assert seeded[0]["mlm_count"].item() == seeded[1]["mlm_count"].item()


# ------------------------------------------------------------------ the matcher


def test_a_training_step_of_the_matcher_gives_finite_gradients():
    torch.manual_seed(0)
    model = VokenMatcher(MATCHER, TrainSpec(), (1, 56, 56), 0)
    batch = _scenes(6, torch.Generator().manual_seed(0))
    images = batch["input"].float() / 255
    loss, scores = model.loss(batch["tokens"], images)
    assert scores.shape == (6, 24, 6) and torch.isfinite(loss)
    loss.backward()
    _finite_gradients(model)
    assert model.encoder.net[0].weight.grad.abs().sum() > 0 and model.text.tokens.weight.grad.abs().sum() > 0
    tokens = model.token_embeddings(batch["tokens"])
    assert torch.allclose(tokens.norm(dim=-1), torch.ones(6, 24), atol=1e-5)
    assert model.caption_image_scores(batch["tokens"][:4], images).shape == (4, 6)
    assert model.encoder(images).shape == (6, model.encoder.out_dim)
    assert torch.equal(model.real_tokens(batch["tokens"]), batch["tokens"] >= 5)


def test_the_matcher_trains_and_validates_with_lightning():
    generator = torch.Generator().manual_seed(0)
    splits = Splits(train=_scenes(16, generator), val=_scenes(8, generator), test=_scenes(8, generator),
                    classes=None)
    model = _fit(VokenMatcher(MATCHER, TrainSpec(max_epochs=1), (1, 56, 56), 0), splits, fast_dev_run=2)
    assert {"train/loss", "val/r1"} <= set(model.trainer.callback_metrics)


def test_the_matcher_learns_which_token_names_which_image():
    """Eight distinct images, each named by its own token: the loss falls and R@1 reaches 1."""
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    images = torch.zeros(8, 1, 56, 56)
    for k in range(8):  # a bright block at a place of its own, on a little noise
        row, col = divmod(k, 4)
        images[k, 0, 4 + 26 * row: 24 + 26 * row, 2 + 13 * col: 12 + 13 * col] = 1
    images = (images + 0.1 * torch.rand(8, 1, 56, 56, generator=generator)).clamp(0, 1)
    tokens = torch.full((8, 24), PAD)
    tokens[:, 0], tokens[:, 1], tokens[:, 2] = CLS, torch.arange(100, 108), SEP
    model = VokenMatcher(MATCHER, TrainSpec(), (1, 56, 56), 0)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)

    def recall() -> float:
        model.eval()
        with torch.no_grad():
            hits = model.caption_image_scores(tokens, images).argmax(dim=1) == torch.arange(8)
        model.train()
        return hits.float().mean().item()

    before, losses = recall(), []
    for _ in range(60):
        loss, _ = model.loss(tokens, images)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.3 * sum(losses[:5]) / 5
    assert recall() == 1.0 > before


def test_the_matcher_on_a_frozen_upstream_encoder_of_28px_images():
    spec = MATCHER.model_copy(update={"upstream_projection": "frozen", "upstream_side": 28})
    upstream = ConvNet(1, [8, 16], 1, 2)
    before = {k: v.clone() for k, v in upstream.state_dict().items()}
    model = VokenMatcher(spec, TrainSpec(), (1, 56, 56), 0, encoder=upstream)
    assert model.encoder is upstream and model.image_projection.in_features == upstream.out_dim
    model.train()
    assert not upstream.training  # BatchNorm statistics kept
    batch = _scenes(4, torch.Generator().manual_seed(0))
    seen = []
    hook = upstream.register_forward_hook(lambda module, args, out: seen.append(args[0].shape))
    loss, _ = model.loss(batch["tokens"], batch["input"].float() / 255)
    hook.remove()
    loss.backward()
    assert seen == [torch.Size([4, 1, 28, 28])]
    assert all(p.grad is None for p in upstream.parameters())
    assert model.image_projection.weight.grad is not None
    assert all(torch.equal(before[k], v) for k, v in upstream.state_dict().items())
