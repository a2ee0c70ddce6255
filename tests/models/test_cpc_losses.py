"""CPC's losses as pure functions (`pipeline.models.cpc.losses`): values worked out by hand and by an
explicit loop over the predictions, the floor reached by perfect predictions, and equality with
the models' former `cpc_loss` methods on seeded inputs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from pipeline.models.cpc import CPCImageSpec, CPCSequenceSpec
from pipeline.models.cpc.image import CPCImage
from pipeline.models.cpc.infonce import per_offset_info_nce
from pipeline.models.cpc.losses import grid_cpc_loss, sequence_cpc_loss
from pipeline.models.cpc.sequence import CPCSequence
from pipeline.spec.experiment import TrainSpec

IMAGE = CPCImageSpec(kind="cpc_image", encoder_widths=[8, 16], context_width=16, context_layers=2, offsets=3)
SEQUENCE = CPCSequenceSpec(kind="cpc_sequence", context_dim=16, steps=3,
                           encoder=[{"channels": 8, "kernel": 4, "stride": 4}, {"channels": 16, "kernel": 1}])


def identity(x: torch.Tensor) -> torch.Tensor:
    return x


def linear(weight: torch.Tensor):
    return lambda x: x @ weight.T


def _lse(values: list[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


# ------------------------------------------------------------------ known values


def test_sequence_loss_by_hand():
    # Two sequences of two 1-d codes, predicting one step ahead with the identity as the head.
    codes = torch.tensor([[[1.0], [2.0]], [[3.0], [-1.0]]])  # [B=2, T=2, D=1]
    context = torch.tensor([[[1.0], [0.0]], [[0.5], [0.0]]])  # only step 0 predicts (t + 1 < T)
    # Same-step negatives: each prediction scores the two codes at step 1, {2, -1}.
    # Sequence 0: logits [2, -1], true 2 -> ln(1 + e^-3). Sequence 1: logits [1, -0.5], true -0.5
    # -> ln(1 + e^1.5). Only sequence 0 ranks its target first.
    loss, losses, accuracies = sequence_cpc_loss(codes, context, [1], [identity])
    expected = (math.log(1 + math.exp(-3)) + math.log(1 + math.exp(1.5))) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert len(losses) == 1
    assert losses[0].item() == pytest.approx(expected, rel=1e-6)
    assert accuracies[0].item() == 0.5
    # Every code of the batch a candidate: {1, 2, 3, -1}.
    loss, _, accuracies = sequence_cpc_loss(codes, context, [1], [identity], same_sequence_negatives=True)
    expected = ((_lse([1, 2, 3, -1]) - 2) + (_lse([0.5, 1, 1.5, -0.5]) + 0.5)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert accuracies[0].item() == 0.0  # the code 3 outscores both targets


def test_zero_predictions_give_ln_of_the_candidates():
    torch.manual_seed(0)
    codes = torch.randn(2, 3, 4, 2)  # B, D, R, Q: 16 candidates
    loss, losses, _ = grid_cpc_loss(codes, torch.zeros(2, 5, 4, 2), [1, 2], [linear(torch.randn(3, 5))] * 2)
    assert [x.item() for x in losses] == pytest.approx([math.log(16)] * 2, rel=1e-6)
    assert loss.item() == pytest.approx(math.log(16), rel=1e-6)
    codes = torch.randn(3, 5, 2)  # B, T, D
    context = torch.zeros(3, 5, 4)
    heads = [linear(torch.randn(2, 4)) for _ in range(3)]
    _, losses, _ = sequence_cpc_loss(codes, context, [1, 2, 3], heads)
    assert [x.item() for x in losses] == pytest.approx([math.log(3)] * 3, rel=1e-6)
    _, losses, _ = sequence_cpc_loss(codes, context, [1, 2, 3], heads, same_sequence_negatives=True)
    assert [x.item() for x in losses] == pytest.approx([math.log(15)] * 3, rel=1e-6)


def test_grid_loss_matches_an_explicit_loop_over_the_predictions():
    torch.manual_seed(1)
    b, d, r, q, h = 2, 3, 4, 2, 5
    codes, context = torch.randn(b, d, r, q), torch.randn(b, h, r, q)
    weights = [torch.randn(d, h) for _ in range(2)]
    offsets = [1, 3]
    loss, losses, accuracies = grid_cpc_loss(codes, context, offsets, [linear(w) for w in weights])
    positions = [(n, i, j) for n in range(b) for i in range(r) for j in range(q)]
    for offset, weight, found, accuracy in zip(offsets, weights, losses, accuracies, strict=True):
        terms, hits = [], []
        for n, i, j in positions:
            if i + offset >= r:
                continue
            prediction = (weight.double() @ context[n, :, i, j].double()).tolist()
            logits = [sum(p * c for p, c in zip(prediction, codes[m, :, y, x].tolist(), strict=True))
                      for m, y, x in positions]
            true = positions.index((n, i + offset, j))
            terms.append(_lse(logits) - logits[true])
            hits.append(max(range(len(logits)), key=logits.__getitem__) == true)
        assert found.item() == pytest.approx(sum(terms) / len(terms), rel=1e-5)
        assert accuracy.item() == pytest.approx(sum(hits) / len(hits))
    assert loss.item() == pytest.approx(sum(x.item() for x in losses) / len(losses), rel=1e-6)


def test_sequence_loss_matches_an_explicit_loop_over_the_predictions():
    torch.manual_seed(2)
    b, t, d, h = 3, 5, 2, 4
    codes, context = torch.randn(b, t, d), torch.randn(b, t, h)
    weights = [torch.randn(d, h) for _ in range(2)]
    for same_sequence in (False, True):
        _, losses, _ = sequence_cpc_loss(codes, context, [1, 2], [linear(w) for w in weights], same_sequence)
        for k, weight, found in zip([1, 2], weights, losses, strict=True):
            terms = []
            for n in range(b):
                for s in range(t - k):
                    prediction = weight.double() @ context[n, s].double()
                    pool = [(m, u) for m in range(b) for u in range(t) if same_sequence or u == s + k]
                    logits = [float(prediction @ codes[m, u].double()) for m, u in pool]
                    terms.append(_lse(logits) - logits[pool.index((n, s + k))])
            assert found.item() == pytest.approx(sum(terms) / len(terms), rel=1e-5)


# ------------------------------------------------------------------ invariants


def test_perfect_predictions_reach_the_floor_and_shuffled_ones_do_not():
    torch.manual_seed(3)
    # Sequences: the context at t is 30 times the (unit) code at t + 1, the head the identity;
    # shuffled, each prediction points at another sequence's code.
    codes = F.normalize(torch.randn(4, 6, 32), dim=2)
    context = torch.zeros_like(codes)
    context[:, :-1] = 30 * codes[:, 1:]
    loss, _, accuracies = sequence_cpc_loss(codes, context, [1], [identity], same_sequence_negatives=True)
    assert loss.item() < 1e-3
    assert accuracies[0].item() == 1.0
    shuffled, _, accuracies = sequence_cpc_loss(codes, context.roll(1, dims=0), [1], [identity],
                                                same_sequence_negatives=True)
    assert shuffled.item() > math.log(4 * 6)
    assert accuracies[0].item() < 0.2
    # A grid: the context at row i is the code at row i + 2.
    codes = F.normalize(torch.randn(2, 32, 5, 3), dim=1)
    context = torch.zeros_like(codes)
    context[:, :, :-2] = 30 * codes[:, :, 2:]
    loss, _, accuracies = grid_cpc_loss(codes, context, [2], [identity])
    assert loss.item() < 1e-3
    assert accuracies[0].item() == 1.0
    shuffled, _, accuracies = grid_cpc_loss(codes, context.roll(1, dims=0), [2], [identity])  # the other image's
    assert shuffled.item() > math.log(2 * 5 * 3)
    assert accuracies[0].item() == 0.0


# ------------------------------------------------------------------ the former methods


def _old_image_loss(model: CPCImage, codes: torch.Tensor):
    """CPCImage.cpc_loss as it was before the loss became a function."""
    context = model.context(codes)
    b, d, r, q = codes.shape
    candidates = codes.permute(0, 2, 3, 1).reshape(b * r * q, d)
    index = torch.arange(b * r * q, device=codes.device).view(b, r, q)

    def terms():
        for offset, predictor in zip(model.offsets, model.predictors, strict=True):
            sources = context[:, :, : r - offset].permute(0, 2, 3, 1).reshape(-1, context.shape[1])
            targets = index[:, offset:].reshape(-1)
            yield predictor(sources), candidates, targets, None

    return per_offset_info_nce(terms())


def _old_sequence_loss(model: CPCSequence, codes: torch.Tensor, context: torch.Tensor):
    """CPCSequence.cpc_loss as it was before the loss became a function."""
    b, t, d = codes.shape
    candidates = codes.reshape(b * t, d)
    index = torch.arange(b * t, device=codes.device).view(b, t)
    time = torch.arange(t, device=codes.device).repeat(b)

    def terms():
        for k, predictor in zip(model.offsets, model.predictors, strict=True):
            targets = index[:, k:].reshape(-1)
            allowed = None
            if not model.spec.same_sequence_negatives:
                allowed = time[None, :] == time[targets][:, None]
            yield predictor(context[:, : t - k]).reshape(-1, d), candidates, targets, allowed

    return per_offset_info_nce(terms())


def _assert_same(new, old, params) -> None:
    (loss, losses, accuracies), (old_loss, old_losses, old_accuracies) = new, old
    assert torch.equal(loss, old_loss)
    assert all(torch.equal(a, b) for a, b in zip(losses, old_losses, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(accuracies, old_accuracies, strict=True))
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    old_grads = torch.autograd.grad(old_loss, params, retain_graph=True, allow_unused=True)
    assert all((a is None and b is None) or torch.equal(a, b) for a, b in zip(grads, old_grads, strict=True))


def test_the_image_loss_is_the_former_method_bit_for_bit():
    torch.manual_seed(0)
    model = CPCImage(IMAGE, TrainSpec(), (1, 28, 28), 10)
    codes = model.encoder.code_map(model.augmented_patches(torch.rand(8, 1, 28, 28)))
    old = _old_image_loss(model, codes)
    params = list(model.parameters())
    _assert_same(grid_cpc_loss(codes, model.context(codes), model.offsets, model.predictors), old, params)
    _assert_same(model.cpc_loss(codes), old, params)


@pytest.mark.parametrize("same_sequence", [False, True])
def test_the_sequence_loss_is_the_former_method_bit_for_bit(same_sequence: bool):
    torch.manual_seed(0)
    spec = SEQUENCE.model_copy(update={"same_sequence_negatives": same_sequence})
    model = CPCSequence(spec, TrainSpec(), (1, 40), 10)
    codes, context = model.encoder.encode(torch.randn(8, 1, 40))
    old = _old_sequence_loss(model, codes, context)
    params = list(model.parameters())
    new = sequence_cpc_loss(codes, context, model.offsets, model.predictors, same_sequence)
    _assert_same(new, old, params)
    _assert_same(model.cpc_loss(codes, context), old, params)
