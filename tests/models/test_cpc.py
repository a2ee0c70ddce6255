"""CPC: the patch grid, the causal context, InfoNCE at chance and at perfection, one predictor per
offset, and real training steps of both kinds."""

from __future__ import annotations

import math

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from pipeline import plugins
from pipeline.data.datamodule import Splits, TensorDataModule
from pipeline.models.cpc import CPCImageSpec, CPCSequenceSpec, PatchGridSpec
from pipeline.models.cpc.image import ContextNetwork, CPCImage, patchify, shift_crop
from pipeline.models.cpc.infonce import info_nce
from pipeline.models.cpc.sequence import CPCSequence, shift_in_time
from pipeline.spec.experiment import DataSpec, TrainSpec

IMAGE = CPCImageSpec(kind="cpc_image", encoder_widths=[8, 16], context_width=16, context_layers=2, offsets=3)
SEQUENCE = CPCSequenceSpec(kind="cpc_sequence", context_dim=16, steps=3,
                           encoder=[{"channels": 8, "kernel": 4, "stride": 4}, {"channels": 16, "kernel": 1}])


def test_the_registry_builds_both_kinds():
    assert plugins.models()["cpc_image"].load_class() is CPCImage
    assert plugins.models()["cpc_sequence"].load_class() is CPCSequence


# ------------------------------------------------------------------ patching


@pytest.mark.parametrize(("side", "size", "stride", "padding", "grid", "first_offset"), [
    (28, 8, 4, 2, 7, 2),    # the Fashion-MNIST default: 50% overlap
    (32, 8, 4, 0, 7, 2),
    (28, 14, 7, 0, 3, 2),
    (30, 10, 5, 0, 5, 2),
    (28, 7, 7, 0, 4, 1),    # no overlap: the next row is already a fair target
    (24, 9, 3, 0, 6, 3),    # two-thirds overlap
])
def test_the_grid_and_its_overlap(side, size, stride, padding, grid, first_offset):
    patch = PatchGridSpec(size=size, stride=stride, padding=padding)
    assert patch.grid(side, side) == (grid, grid)
    assert patch.first_offset() == first_offset
    images = torch.arange(2 * side * side, dtype=torch.float32).view(2, 1, side, side)
    patches = patchify(images, patch)
    assert patches.shape == (2, grid, grid, 1, size, size)
    padded = F.pad(images, [padding] * 4)
    for r, q in ((0, 0), (grid - 1, grid - 1), (1, grid // 2)):
        expected = padded[:, :, r * stride: r * stride + size, q * stride: q * stride + size]
        assert torch.equal(patches[:, r, q], expected)
    # Neighbouring patches share size - stride columns.
    assert torch.equal(patches[0, 0, 0, 0, :, stride:], patches[0, 0, 1, 0, :, : size - stride])


def test_a_grid_that_does_not_tile_is_an_error():
    with pytest.raises(ValueError, match="do not tile"):
        PatchGridSpec(size=8, stride=5, padding=2).grid(28, 28)


def test_each_patch_is_shifted_on_its_own_within_its_margin():
    torch.manual_seed(0)
    image = torch.arange(28 * 28, dtype=torch.float32).view(1, 1, 28, 28)
    patch = PatchGridSpec()
    big = patchify(image, patch, margin=1).reshape(-1, 1, 10, 10)
    cropped = shift_crop(big, 8)
    assert cropped.shape == (49, 1, 8, 8)
    shifts = set()
    for n in range(49):
        found = [(dy, dx) for dy in range(3) for dx in range(3)
                 if torch.equal(cropped[n], big[n, :, dy:dy + 8, dx:dx + 8])]
        assert found, f"patch {n} is not a window of its margin"
        shifts.add(found[0])
    assert len(shifts) > 1  # not one shift for all


def _pixels_of_each_patch(model: CPCImage, side: int, trials: int) -> torch.Tensor:
    """Which image pixels each augmented patch shows, over `trials` random draws of the per-patch
    shifts: an image whose pixel values are their own ids, cut and jittered as in training."""
    ids = torch.arange(1, side * side + 1, dtype=torch.float32).view(1, 1, side, side) / (side * side + 1)
    patches = model.augmented_patches(ids.expand(trials, -1, -1, -1))  # trials, R, Q, 1, S, S
    return (patches * (side * side + 1)).round().long().flatten(3)  # 0 where a patch shows padding


def _shared_pixels(pixels: torch.Tensor, offset: int) -> int:
    """Pairs (context patch in row r, any column; target in row r + offset, any column) that show
    a common image pixel, counted over all draws."""
    shared = 0
    for r in range(pixels.shape[1] - offset):
        context = pixels[:, r, :, None, :, None]  # trials, Q (context), 1, P, 1
        target = pixels[:, r + offset, None, :, None, :]  # trials, 1, Q (target), 1, P
        common = (context == target) & (target > 0)
        shared += int(common.flatten(3).any(-1).sum())
    return shared


@pytest.mark.parametrize(("size", "stride", "padding", "jitter"), [(8, 4, 2, 1), (8, 4, 2, 2), (9, 3, 0, 1)])
def test_no_target_patch_shares_a_pixel_with_its_context_whatever_the_jitter(size, stride, padding, jitter):
    side = 28 if (size, stride) == (8, 4) else 24
    spec = CPCImageSpec(kind="cpc_image", encoder_widths=[8], context_width=8, context_layers=1, offsets=1,
                        patch={"size": size, "stride": stride, "padding": padding},
                        augment={"jitter": jitter, "brightness": 0, "contrast": 0, "flip": 0})
    model = CPCImage(spec, TrainSpec(), (1, side, side), 10)
    torch.manual_seed(0)
    pixels = _pixels_of_each_patch(model, side, trials=300)
    assert model.offsets[0] == spec.first_offset == math.ceil((size + 2 * jitter) / stride)
    assert _shared_pixels(pixels, spec.first_offset) == 0
    # The check can fail: one row nearer, the jittered patches do share pixels.
    assert _shared_pixels(pixels, spec.first_offset - 1) > 0


def test_offsets_past_the_grid_name_the_first_offset_and_the_jitter():
    spec = CPCImageSpec(kind="cpc_image", offsets=5)
    with pytest.raises(ValueError, match="first offset is 3.*jitter of 1 px.*at most 4"):
        spec.check_input((1, 28, 28))


def test_the_sequence_time_shift_does_not_wrap_around():
    signals = torch.arange(1, 11, dtype=torch.float32).view(1, 1, 10).repeat(3, 2, 1)
    shifted = shift_in_time(signals, torch.tensor([2, -3, 0]))
    assert shifted[0, 0].tolist() == [0, 0, 1, 2, 3, 4, 5, 6, 7, 8]
    assert shifted[1, 1].tolist() == [4, 5, 6, 7, 8, 9, 10, 0, 0, 0]
    assert torch.equal(shifted[2], signals[2])
    spec = CPCSequenceSpec.model_validate(
        {**SEQUENCE.model_dump(), "augment": {"scale": 0, "noise": 0, "shift": 3}})
    model = CPCSequence(spec, TrainSpec(), (1, 40), 10)
    torch.manual_seed(0)
    out = model.augment(torch.arange(1, 41, dtype=torch.float32).view(1, 1, 40).repeat(50, 1, 1))
    assert len({tuple(row.tolist()) for row in out[:, 0]}) == 7  # every shift in -3..3 drawn
    # Each output is a window of the signal with zeros at one end: never the end before the start.
    for row in out[:, 0]:
        values = row[row != 0]
        assert torch.equal(values, torch.arange(values[0].item(), values[0].item() + len(values)))


# ------------------------------------------------------------------ causality


def test_the_context_at_row_i_does_not_depend_on_rows_below():
    torch.manual_seed(0)
    context = ContextNetwork(code_dim=8, width=16, layers=3, kernel=3)
    codes = torch.randn(2, 8, 7, 7, requires_grad=True)
    out = context(codes)
    probe = torch.randn(out.shape[1], 7)  # a random readout (a plain sum cancels under LayerNorm)
    reach = 3 * (3 // 2)  # 3 masked layers of kernel 3: 3 rows up
    for row in range(7):
        (grad,) = torch.autograd.grad((out[:, :, row] * probe).sum(), codes, retain_graph=True)
        assert grad[:, :, row + 1:].abs().sum() == 0, f"row {row} sees rows below it"
        seen = grad[:, :, max(0, row - reach): row + 1].abs().amax(dim=(0, 1, 3))
        assert (seen > 0).all(), f"row {row} misses rows above it within reach"


def test_the_sequence_context_at_step_t_does_not_depend_on_later_samples():
    torch.manual_seed(0)
    model = CPCSequence(SEQUENCE, TrainSpec(), (1, 40), 10)
    signals = torch.randn(3, 1, 40, requires_grad=True)
    codes, context = model.encoder.encode(signals)
    assert codes.shape[1] == 10  # stride 4
    for t in range(10):
        (grad,) = torch.autograd.grad((context[:, t] * torch.randn(context.shape[-1])).sum(), signals,
                                      retain_graph=True)
        assert grad[..., 4 * (t + 1):].abs().sum() == 0, f"step {t} sees the future"
        assert grad[..., : 4 * (t + 1)].abs().max() > 0


# ------------------------------------------------------------------ InfoNCE


def test_info_nce_is_near_zero_when_predictions_equal_their_targets():
    torch.manual_seed(0)
    candidates = F.normalize(torch.randn(50, 64), dim=1)
    targets = torch.randperm(50)[:20]
    loss, accuracy = info_nce(20 * candidates[targets], candidates, targets)
    assert loss.item() < 1e-3
    assert accuracy.item() == 1.0


def test_info_nce_with_a_mask_ranks_only_the_allowed_candidates():
    candidates = torch.eye(4)
    predictions = torch.tensor([[0.0, 5.0, 1.0, 0.0]])  # candidate 1 wins unless masked out
    allowed = torch.tensor([[False, False, True, True]])
    loss, accuracy = info_nce(predictions, candidates, torch.tensor([2]), allowed)
    assert accuracy.item() == 1.0
    assert math.isclose(loss.item(), math.log(1 + math.exp(-1)), rel_tol=1e-5)


def test_image_loss_at_initialisation_is_ln_of_the_candidates():
    torch.manual_seed(0)
    model = CPCImage(IMAGE, TrainSpec(), (1, 28, 28), 10)
    images = torch.rand(16, 1, 28, 28)
    codes = model.encoder.code_map(model.augmented_patches(images))
    loss, losses, _ = model.cpc_loss(codes)
    candidates = 16 * 7 * 7  # every patch of the batch
    assert len(losses) == 3
    for offset_loss in losses:
        assert abs(offset_loss.item() - math.log(candidates)) < 0.05
    assert math.isclose(loss.item(), torch.stack(losses).mean().item())  # averaged, not summed


@pytest.mark.parametrize(("same_sequence", "candidates"), [(False, 16), (True, 16 * 10)])
def test_sequence_loss_at_initialisation_is_ln_of_the_candidates(same_sequence, candidates):
    torch.manual_seed(0)
    spec = SEQUENCE.model_copy(update={"same_sequence_negatives": same_sequence})
    model = CPCSequence(spec, TrainSpec(), (1, 40), 10)
    codes, context = model.encoder.encode(torch.randn(16, 1, 40))
    _, losses, _ = model.cpc_loss(codes, context)
    for step_loss in losses:
        assert abs(step_loss.item() - math.log(candidates)) < 0.05


def test_each_offset_has_its_own_predictor():
    torch.manual_seed(0)
    model = CPCImage(IMAGE, TrainSpec(), (1, 28, 28), 10)
    assert model.offsets == [3, 4, 5]  # 8 px patches every 4 px, jitter 1: offsets 1 and 2 can overlap
    weights = [p.weight for p in model.predictors]
    assert len({w.data_ptr() for w in weights}) == 3
    codes = model.encoder.code_map(model.augmented_patches(torch.rand(8, 1, 28, 28)))
    _, losses, _ = model.cpc_loss(codes)
    grads = torch.autograd.grad(losses[1], weights, allow_unused=True)
    assert grads[0] is None
    assert grads[2] is None
    assert grads[1].abs().sum() > 0


# ------------------------------------------------------------------ training


def _sequence_splits() -> Splits:
    generator = torch.Generator().manual_seed(0)

    def make(n: int):
        labels = torch.arange(n) % 10
        time = torch.linspace(0, 1, 40)
        signals = torch.sin(2 * math.pi * (labels[:, None] + 1) * time) + 0.1 * torch.randn(n, 40, generator=generator)
        return signals[:, None].float(), labels

    return Splits.of_pairs(train=make(64), val=make(32), test=make(32), classes=tuple(str(i) for i in range(10)))


def _fit(model, splits, **trainer):
    data = TensorDataModule(DataSpec(batch_size=16), seed=0, splits=splits)
    options = dict(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                   enable_model_summary=False)
    pl.Trainer(**{**options, **trainer}).fit(model, datamodule=data)
    return model


@pytest.mark.parametrize("kind", ["cpc_image", "cpc_sequence"])
def test_a_real_training_step_changes_the_encoder_and_the_predictors(kind, tiny_splits):
    pl.seed_everything(0, verbose=False)
    if kind == "cpc_image":
        model, splits = CPCImage(IMAGE, TrainSpec(max_epochs=1), (1, 28, 28), 10), tiny_splits
    else:
        model, splits = CPCSequence(SEQUENCE, TrainSpec(max_epochs=1), (1, 40), 10), _sequence_splits()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _fit(model, splits, max_steps=1, num_sanity_val_steps=0, limit_val_batches=0)
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any(k.startswith("encoder.") for k in changed)
    assert all(f"predictors.{i}.weight" in changed for i in range(3))


def test_fast_dev_run_of_both_kinds(tiny_splits):
    _fit(CPCImage(IMAGE, TrainSpec(max_epochs=1), (1, 28, 28), 10), tiny_splits, fast_dev_run=2)
    model = _fit(CPCSequence(SEQUENCE, TrainSpec(max_epochs=1), (1, 40), 10), _sequence_splits(), fast_dev_run=2)
    assert set(model.plot_groups()["infonce_accuracy"][1]) == {f"train/infonce_acc_k{k}_step" for k in (1, 2, 3)}


def test_the_downstream_encoder_pools_the_patch_codes_over_the_grid():
    model = CPCImage(IMAGE, TrainSpec(), (1, 28, 28), 10)
    images = torch.rand(5, 1, 28, 28)
    features = model.encoder(images)
    assert features.shape == (5, model.encoder.out_dim) == (5, 16 * 2 * 2)
    # A 7 x 7 map to 2 x 2: the means over rows and columns 0-3 and 3-6 (adaptive pooling's
    # overlapping bins), code by code. Channel 0 holds 7 r + c, channel 1 the same plus 49.
    grid = torch.arange(2 * 7 * 7, dtype=torch.float32).view(1, 2, 7, 7)
    assert model.encoder.pool(grid).tolist() == [[12.0, 15.0, 33.0, 36.0, 61.0, 64.0, 82.0, 85.0]]
    # The features are that pooling of the image's patch codes.
    codes = model.encoder.code_map(patchify(images, IMAGE.patch))
    assert codes.shape == (5, 16, 7, 7)
    halves = (slice(0, 4), slice(3, 7))
    expected = torch.stack([codes[:, :, rows, cols].mean(dim=(2, 3)) for rows in halves for cols in halves], 2)
    assert torch.allclose(features, expected.flatten(1), atol=1e-6)
