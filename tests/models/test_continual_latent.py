"""The latent replay strategies (AR1* / CWR*, REMIND) on tiny random streams: the class-balanced
buffer, CWR*'s consolidation against the formula by hand, the product quantiser's round trip and
byte count, REMIND's budget against raw images, the frozen lower network under a replay step, and
a saved strategy loaded into a fresh network."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pipeline.data.datamodule import Splits
from pipeline.models.backbones import ConvNet
from pipeline.models.continual import ContinualSpec
from pipeline.models.continual.module import Continual
from pipeline.models.continual.strategies.latent import AR1, REMIND, balanced_quotas
from pipeline.spec.experiment import TrainSpec


def _splits(num_classes: int, per_class: int, shape: tuple[int, ...], seed: int = 0) -> Splits:
    generator = torch.Generator().manual_seed(seed)

    def make(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.arange(n * num_classes) % num_classes
        images = torch.randint(0, 256, (len(labels), *shape), generator=generator, dtype=torch.uint8)
        return images, labels

    return Splits.of_pairs(make(per_class), make(2), make(2), tuple(str(c) for c in range(num_classes)))


def _net(strategy: dict, num_classes: int = 4, experiences: int = 2, per_class: int = 20,
         shape: tuple[int, ...] = (1, 6, 6), hidden: list[int] | None = None, latent_layer: int = 2,
         encoder: torch.nn.Module | None = None, seed: int = 0) -> Continual:
    torch.manual_seed(seed)
    spec = ContinualSpec(kind="continual", hidden=hidden or [16, 12], latent_layer=latent_layer, strategy=strategy,
                         scenario={"type": "class_incremental", "experiences": experiences,
                                   "class_order": list(range(num_classes))})
    net = Continual(spec, TrainSpec(), shape, num_classes, encoder=encoder)
    net.build_stream(_splits(num_classes, per_class, shape), seed=0)
    return net


def _conv_encoder() -> ConvNet:
    """28x28 -> 16 @14 -> 32 @7 -> 64 @7: the module at index 11 reads a 64x7x7 map. Seeded here:
    it is built before `_net` seeds, so its weights would otherwise depend on what ran before."""
    torch.manual_seed(0)
    return ConvNet(1, [16, 32, 64], 1, grid=1)


def _batch(net: Continual, index: int, size: int = 8) -> dict[str, torch.Tensor]:
    fields = net.experiences[index].train
    return {name: values[:size] for name, values in fields.items()}


def _class_counts(labels: torch.Tensor, num_classes: int) -> list[int]:
    return torch.bincount(labels.long(), minlength=num_classes).tolist()


# --- the class-balanced buffer ---


def test_balanced_quotas_share_equally_and_pass_on_what_a_class_lacks():
    assert balanced_quotas({0: 10, 1: 10, 2: 10}, 12) == {0: 4, 1: 4, 2: 4}
    assert balanced_quotas({0: 10, 1: 10, 2: 10}, 13) == {0: 5, 1: 4, 2: 4}
    assert balanced_quotas({0: 2, 1: 10, 2: 10}, 12) == {0: 2, 1: 5, 2: 5}
    assert balanced_quotas({0: 2, 1: 3}, 100) == {0: 2, 1: 3}
    assert balanced_quotas({0: 5, 1: 5}, 0) == {0: 0, 1: 0}


def test_ar1_buffer_stays_class_balanced_and_keeps_older_latents():
    net = _net({"name": "ar1", "memory": {"samples": 12}, "cwr_star": False}, num_classes=6, experiences=3)
    strategy = net.strategy
    assert isinstance(strategy, AR1)
    strategy.end_experience(0)
    assert _class_counts(strategy.labels, 6) == [6, 6, 0, 0, 0, 0]
    assert strategy.stored_latents.shape == (12, 16)
    assert strategy.labels.dtype == torch.uint8
    first = strategy.stored_latents.clone()
    strategy.next_experience(1)
    strategy.end_experience(1)
    assert _class_counts(strategy.labels, 6) == [3, 3, 3, 3, 0, 0]
    # The older classes' latents are a subset of those stored before (computed once, lower frozen).
    old = strategy.stored_latents[strategy.labels < 2]
    assert all((first == row).all(dim=1).any() for row in old)
    strategy.next_experience(2)
    strategy.end_experience(2)
    assert _class_counts(strategy.labels, 6) == [2] * 6
    assert strategy.memory() == {"memory_samples": 12, "memory_bytes": 12 * (16 * 4 + 1)}


def test_ar1_byte_budget_counts_float32_latents_labels_and_cwr_state():
    budget = 2000
    net = _net({"name": "ar1", "memory": {"bytes": budget}})
    strategy = net.strategy
    strategy.end_experience(0)
    fixed = 4 * 12 * 4 + 4 * 8  # cw [4, 12] float32 (the head reads 12 features), past [4] int64
    assert len(strategy.labels) == (budget - fixed) // (16 * 4 + 1)
    assert strategy.memory()["memory_bytes"] <= budget


def test_a_class_that_comes_back_shares_its_room_between_its_experiences():
    # Domain-incremental streams bring every class back: the second time, half of a class's room
    # goes to the new examples, half stays with the ones kept.
    strategy = _net({"name": "ar1", "memory": {"samples": 8}, "cwr_star": False}).strategy
    labels = torch.arange(20) % 2
    kept, taken = strategy.refill(labels, 8)
    assert len(kept) == 0
    assert _class_counts(labels[taken], 2) == [4, 4]
    strategy.store(kept, torch.zeros(8, 3), labels[taken])
    kept, taken = strategy.refill(labels, 8)
    assert _class_counts(strategy.labels[kept], 2) == [2, 2]
    assert _class_counts(labels[taken], 2) == [2, 2]
    assert strategy.appearances.tolist()[:2] == [2, 2]


# --- CWR* ---


def test_cwr_star_consolidation_matches_the_formula_by_hand():
    net = _net({"name": "ar1", "memory": {"samples": 6}}, num_classes=4, per_class=10)
    strategy, head = net.strategy, net.head
    assert not head.bias.requires_grad
    assert (head.weight == 0).all()
    assert (head.bias == 0).all()
    generator = torch.Generator().manual_seed(1)
    tw0 = torch.randn(4, 12, generator=generator)
    with torch.no_grad():
        head.weight.copy_(tw0)
    strategy.end_experience(0)  # classes 0, 1 with 10 examples each
    expected = torch.zeros(4, 12)
    expected[:2] = tw0[:2] - tw0[:2].mean()
    assert torch.allclose(strategy.cw, expected)
    assert strategy.past.tolist() == [10, 10, 0, 0]
    assert torch.allclose(head.weight, expected)  # what experience 0 is measured with

    strategy.next_experience(1)  # trains classes 2, 3 (10 each) and the replayed 0, 1 (3 each)
    replayed = _class_counts(strategy.labels, 4)
    assert replayed == [3, 3, 0, 0]
    assert torch.allclose(head.weight, expected)  # rows from cw; 2, 3 never seen: zero
    tw1 = torch.randn(4, 12, generator=generator)
    with torch.no_grad():
        head.weight.copy_(tw1)
    strategy.end_experience(1)
    counts = [3, 3, 10, 10]
    past = [10, 10, 0, 0]
    for j in range(4):
        w = math.sqrt(past[j] / counts[j])
        want = (expected[j] * w + tw1[j] - tw1.mean()) / (w + 1)
        assert torch.allclose(strategy.cw[j], want, atol=1e-6), j
    assert strategy.past.tolist() == [13, 13, 10, 10]
    assert torch.allclose(head.weight, strategy.cw)
    assert (head.bias == 0).all()


def test_cwr_star_prepares_only_the_phase_classes():
    net = _net({"name": "ar1", "memory": {"samples": 4}}, num_classes=6, experiences=3, per_class=5)
    strategy, head = net.strategy, net.head
    with torch.no_grad():
        head.weight.normal_()
    strategy.end_experience(0)
    with torch.no_grad():
        head.weight.normal_()
    # Experience 1 trains classes 2, 3 and the replayed 0, 1: rows 4, 5 zero, the rest from cw.
    strategy.next_experience(1)
    assert (head.weight[4:] == 0).all()
    assert torch.equal(head.weight[:4], strategy.cw[:4])


# --- the product quantiser ---


def _remind(subquantizers: int, bits: int, **kwargs) -> Continual:
    strategy = {"name": "remind", "subquantizers": subquantizers, "bits": bits, "quantizer_samples": 400,
                "memory": {"bytes": 100_000}}
    return _net(strategy, per_class=100, hidden=[32, 16], **kwargs)


def test_pq_round_trip_is_close_and_closer_than_a_coarser_quantiser():
    errors = {}
    for subquantizers, bits in ((8, 6), (1, 2)):
        net = _remind(subquantizers, bits)
        strategy = net.strategy
        strategy.fit_quantizer(0)
        assert strategy.centroids.shape == (subquantizers, 2**bits, 32 // subquantizers)
        latents = strategy.latents(net.experiences[1].train["input"])  # not what it was fitted on
        error = (strategy.reconstruct(latents) - latents).pow(2).sum() / latents.pow(2).sum()
        errors[subquantizers, bits] = float(error)
    assert errors[8, 6] < 0.06  # relative squared error; ~0.02 here, ~0.23 for the coarse one
    assert errors[8, 6] < errors[1, 2] / 3


def test_torch_codes_agree_with_faiss():
    import faiss

    net = _remind(4, 5)
    strategy = net.strategy
    strategy.fit_quantizer(0)
    latents = strategy.latents(net.experiences[1].train["input"])
    quantizer = faiss.ProductQuantizer(32, 4, 5)
    faiss.copy_array_to_vector(strategy.centroids.flatten().numpy(), quantizer.centroids)
    theirs = quantizer.compute_codes(latents.numpy())  # bits=5: packed, so compare the decoded vectors
    ours = strategy.reconstruct(latents).numpy()
    assert np.allclose(quantizer.decode(theirs), ours, atol=1e-5)


def test_bytes_per_sample_and_memory_follow_the_formula():
    # 64x7x7 maps, M = 2 sub-quantisers of 5 bits: ceil(10 / 8) = 2 bytes per position.
    net = _net({"name": "remind", "subquantizers": 2, "bits": 5, "quantizer_samples": 20,
                "memory": {"bytes": 20_000}},
               num_classes=2, per_class=12, shape=(1, 28, 28), latent_layer=11, encoder=_conv_encoder())
    strategy = net.strategy
    strategy.end_experience(0)
    assert strategy.latent_shape.tolist() == [64, 7, 7]
    assert strategy.code_bytes() == 2
    assert strategy.sample_bytes() == 49 * 2 + 1
    codebook = 2**5 * 64 * 4
    assert strategy.codebook_bytes() == codebook
    assert strategy.capacity() == (20_000 - codebook) // 99
    kept = len(strategy.labels)
    assert kept == 12  # all of experience 0 fits
    assert strategy.codes.shape == (12, 49, 2)
    assert strategy.codes.dtype == torch.uint8
    assert strategy.memory() == {"memory_samples": 12, "memory_bytes": 12 * 99 + codebook}


def test_remind_budget_holds_ten_times_the_raw_images():
    budget = 785_000
    net = _net({"name": "remind", "subquantizers": 1, "bits": 8, "quantizer_samples": 20,
                "memory": {"bytes": budget}},
               num_classes=2, per_class=10, shape=(1, 28, 28), latent_layer=11, encoder=_conv_encoder())
    strategy = net.strategy
    assert isinstance(strategy, REMIND)
    strategy.fit_quantizer(0)
    assert strategy.sample_bytes() == 49 + 1
    raw = budget // (784 + 1)
    assert strategy.capacity() == (budget - 256 * 64 * 4) // 50
    assert strategy.capacity() >= 10 * raw


# --- training with replay ---


def _step(net: Continual, batch: dict[str, torch.Tensor]) -> None:
    optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
    net.train()
    loss = net.strategy.loss(batch)
    assert torch.isfinite(loss)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def _lower_state(net: Continual) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in net.encoder.layers[: net.cut].state_dict().items()}


def _upper_state(net: Continual) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in net.encoder.layers[net.cut:].state_dict().items()}


def test_ar1_trains_everything_first_then_only_the_upper_network_with_replay():
    net = _net({"name": "ar1", "memory": {"samples": 8}, "batch_size": 5})
    before = _lower_state(net)
    for _ in range(2):  # CWR*'s head starts at zero: the first step moves the head alone
        _step(net, _batch(net, 0))
    assert any(not torch.equal(before[k], v) for k, v in _lower_state(net).items())
    net.strategy.end_experience(0)
    net.strategy.next_experience(1)
    assert net.lower_frozen
    lower, upper = _lower_state(net), _upper_state(net)
    _step(net, _batch(net, 1))
    assert all(torch.equal(lower[k], v) for k, v in _lower_state(net).items())
    assert any(not torch.equal(upper[k], v) for k, v in _upper_state(net).items())


def test_remind_replay_step_leaves_the_frozen_lower_network_and_its_statistics_alone():
    net = _net({"name": "remind", "subquantizers": 4, "bits": 4, "quantizer_samples": 10, "batch_size": 6,
                "memory": {"samples": 10}},
               num_classes=2, per_class=6, shape=(1, 28, 28), latent_layer=4, encoder=_conv_encoder())
    strategy = net.strategy
    assert net.lower_frozen
    strategy.train_fields(0)  # fits the quantiser
    assert strategy.quantizer_ready
    assert strategy.latent_shape.tolist() == [16, 14, 14]
    strategy.end_experience(0)
    strategy.next_experience(1)
    lower, upper = _lower_state(net), _upper_state(net)  # batch-norm running statistics included
    _step(net, _batch(net, 1, 4))
    assert all(torch.equal(lower[k], v) for k, v in _lower_state(net).items())
    assert any(not torch.equal(upper[k], v) for k, v in _upper_state(net).items())
    # The replayed maps are the decoded codes; scores read quantised latents too.
    assert net.strategy.scores(_batch(net, 0, 3)["input"], None).shape == (3, 2)


# --- saved and loaded ---


@pytest.mark.parametrize("strategy", [
    {"name": "ar1", "memory": {"samples": 10}},
    {"name": "remind", "subquantizers": 4, "bits": 4, "quantizer_samples": 40, "memory": {"bytes": 3000}},
])
def test_a_filled_strategy_loads_into_a_fresh_network(strategy):
    net = _net(strategy)
    net.strategy.train_fields(0)
    net.strategy.end_experience(0)
    net.strategy.next_experience(1)
    state = net.state_dict()
    fresh = _net(strategy, seed=1)
    assert len(fresh.strategy.labels) == 0
    fresh.load_state_dict(state)
    for name, buffer in net.strategy.named_buffers():
        assert torch.equal(buffer, getattr(fresh.strategy, name)), name
    assert fresh.lower_frozen
    inputs = net.experiences[0].test["input"]
    net.eval()
    fresh.eval()
    with torch.no_grad():
        assert torch.allclose(net.strategy.scores(inputs, None), fresh.strategy.scores(inputs, None))
    assert fresh.strategy.memory() == net.strategy.memory()


# --- REMIND's augmentations ---


def _remind_on_maps(**strategy) -> Continual:
    spec = {"name": "remind", "subquantizers": 4, "bits": 4, "quantizer_samples": 10, "batch_size": 6,
            "memory": {"samples": 10}, **strategy}
    net = _net(spec, num_classes=2, per_class=6, shape=(1, 28, 28), latent_layer=4, encoder=_conv_encoder())
    net.strategy.train_fields(0)
    net.strategy.end_experience(0)
    net.strategy.next_experience(1)
    return net


def test_random_resized_crops_keep_the_map_shape_its_range_and_its_orientation():
    strategy = _remind_on_maps(crop_scale=(0.25, 0.25)).strategy
    ramp = torch.arange(8.0).expand(5, 3, 8, 8).contiguous()  # each row 0..7 left to right
    torch.manual_seed(0)
    cropped = strategy.crop(ramp)
    assert cropped.shape == ramp.shape
    assert cropped.min() >= 0
    assert cropped.max() <= 7
    assert (cropped.diff(dim=3) >= -1e-6).all()  # still increasing left to right: no flip
    spans = cropped[..., -1] - cropped[..., 0]
    assert (spans < 6).all()  # a quarter of the area: about half the width
    assert (spans > 0).all()
    torch.testing.assert_close(strategy.crop(torch.ones(2, 3, 7, 7)), torch.ones(2, 3, 7, 7))  # constant stays
    vectors = torch.randn(4, 10)
    assert torch.equal(strategy.crop(vectors), vectors)  # a vector has no map to crop
    assert torch.equal(_remind_on_maps(crop_scale=None).strategy.crop(ramp), ramp)


def test_mixup_at_lam_one_is_plain_replay_and_in_between_it_differs(monkeypatch):
    """With no crops and lam = 1 the mixed examples are the first draw, labels and all: the same
    loss as replay without mixup under the same random state (the second draw comes after)."""
    plain = _remind_on_maps(crop_scale=None, mixup_alpha=0)
    mixing = _remind_on_maps(crop_scale=None, mixup_alpha=0.1)
    mixing.load_state_dict(plain.state_dict())
    batch = _batch(plain, 1, 4)

    def loss_at(net: Continual, lam: float | None = None) -> float:
        if lam is not None:
            monkeypatch.setattr(torch.distributions.Beta, "sample", lambda self, *a: torch.tensor(lam))
        torch.manual_seed(3)
        with torch.no_grad():
            return float(net.strategy.loss(batch))

    reference = loss_at(plain)
    assert loss_at(mixing, 1.0) == pytest.approx(reference, rel=1e-6)
    assert loss_at(mixing, 0.5) != pytest.approx(reference, rel=1e-3)


def test_remind_mixup_is_refused_for_a_task_incremental_stream():
    from pydantic import ValidationError

    task = {"type": "task_incremental", "experiences": 2}
    with pytest.raises(ValidationError, match="mixup_alpha: 0"):
        ContinualSpec(kind="continual", latent_layer=2, scenario=task, strategy={"name": "remind", "mixup_alpha": 0.1})
    ContinualSpec(kind="continual", latent_layer=2, scenario=task, strategy={"name": "remind"})  # off by default
    with pytest.raises(ValidationError, match="crop_scale"):
        ContinualSpec(kind="continual", latent_layer=2, strategy={"name": "remind", "crop_scale": [0.5, 1.5]})
