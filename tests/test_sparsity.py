"""Dynamic sparse training (`train.sparsity`): the layers' densities, masks that keep their count
through RigL's and SET's updates, dropped weights the smallest, grown ones at zero with their
optimizer state zeroed, the FLOP counts, and a spec trained through the stage with sparse weights."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from pipeline.sparsity import DynamicSparsity, drop_and_grow, drop_fraction_at, layer_densities, random_mask
from pipeline.spec.components import SparsitySpec


def test_erk_keeps_the_total_and_small_layers_denser():
    shapes = {"conv": (16, 1, 5, 5), "hidden": (300, 1568), "head": (10, 300)}
    densities = layer_densities(shapes, 0.1, "erk")
    sizes = {name: math.prod(shape) for name, shape in shapes.items()}
    total = sum(densities[name] * sizes[name] for name in shapes)
    assert total == pytest.approx(0.1 * sum(sizes.values()), rel=1e-9)
    assert densities["conv"] == 1.0  # ERK would give it more than all of its weights
    assert densities["head"] > densities["hidden"]
    assert layer_densities(shapes, 0.1, "uniform") == {name: 0.1 for name in shapes}
    assert layer_densities(shapes, 0.1, "uniform", dense_first_layer=True) == {"conv": 1.0, "hidden": 0.1,
                                                                                "head": 0.1}
    first_dense = layer_densities({"a": (10, 10), "b": (100, 100)}, 0.3, "erk", dense_first_layer=True)
    assert first_dense == {"a": 1.0, "b": pytest.approx((0.3 * 10100 - 100) / 10000)}
    with pytest.raises(ValueError, match="leaves nothing"):
        layer_densities({"a": (100, 100), "b": (10, 10)}, 0.3, "erk", dense_first_layer=True)


def test_a_random_mask_has_exactly_its_count():
    mask = random_mask((30, 40), 0.1, torch.Generator().manual_seed(0))
    assert mask.dtype == torch.bool and int(mask.sum()) == 120


def test_drop_and_grow_drops_the_smallest_and_grows_the_best_scored():
    weight = torch.tensor([[0.5, -0.1, 0.0, 0.3], [0.0, 0.2, -0.9, 0.0]])
    mask = torch.tensor([[True, True, False, True], [False, True, True, False]])
    scores = torch.tensor([[9.0, 0.0, 5.0, 9.0], [1.0, 0.5, 9.0, 7.0]])
    new, dropped, grown = drop_and_grow(weight, mask, 0.4, scores)  # floor(0.4 x 5) = 2
    assert sorted(dropped.tolist()) == [1, 5]  # |-0.1| and |0.2|, the two smallest active
    assert sorted(grown.tolist()) == [2, 7]  # the largest scores among the inactive: 5 and 7
    assert int(new.sum()) == int(mask.sum())
    assert new.flatten()[[0, 2, 3, 6, 7]].all() and not new.flatten()[[1, 4, 5]].any()


def test_the_drop_fraction_decays_by_a_cosine_and_stops():
    spec = SparsitySpec(method="rigl", density=0.1, drop_fraction=0.3)
    assert drop_fraction_at(spec, 0, 100) == pytest.approx(0.3)
    assert drop_fraction_at(spec, 50, 100) == pytest.approx(0.15)
    assert drop_fraction_at(spec, 100, 100) == 0.0


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.fc = nn.Linear(4 * 6 * 6, 5)
        self.training = True

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1))


def _started(method: str, density: float = 0.3) -> tuple[DynamicSparsity, Net, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = Net()
    callback = DynamicSparsity(SparsitySpec(method=method, density=density, update_interval=1,
                                            distribution="uniform"), seed=3)
    model.device = torch.device("cpu")
    callback.on_fit_start(SimpleNamespace(estimated_stepping_batches=100), model)
    return callback, model, torch.optim.Adam(model.parameters(), lr=0.01)


@pytest.mark.parametrize("method", ["rigl", "set"])
def test_updates_keep_each_layers_count_and_grow_at_zero(method: str):
    callback, model, optimizer = _started(method)
    counts = {name: int(mask.sum()) for name, mask in callback.masks.items()}
    for name, layer in callback._layers.items():
        assert torch.equal(layer.weight != 0, callback.masks[name])
    trainer = SimpleNamespace(global_step=0)
    for step in range(1, 6):
        loss = model(torch.randn(8, 1, 8, 8)).square().mean()
        optimizer.zero_grad()
        loss.backward()
        before = {name: mask.clone() for name, mask in callback.masks.items()}
        trainer.global_step = step
        callback.on_before_optimizer_step(trainer, model, optimizer)
        for name, layer in callback._layers.items():
            grown = callback.masks[name] & ~before[name]
            assert (layer.weight[grown] == 0).all()  # grown weights start at zero
            assert (layer.weight.grad[~callback.masks[name]] == 0).all()
            if step > 1:  # Adam's moments of the grown weights are zeroed too
                assert (optimizer.state[layer.weight]["exp_avg"][grown] == 0).all()
        optimizer.step()
        callback.on_train_batch_end(trainer, model, None, None, 0)
        for name, layer in callback._layers.items():
            assert int(callback.masks[name].sum()) == counts[name]
            assert (layer.weight[~callback.masks[name]] == 0).all()
    assert callback.updates == 5
    assert any(not torch.equal(callback.masks[n], m) for n, m in _started(method)[0].masks.items())


def test_rigl_grows_where_the_gradient_is_largest():
    callback, model, optimizer = _started("rigl", density=0.5)
    model(torch.randn(8, 1, 8, 8)).square().mean().backward()
    name, layer = "fc.weight", model.fc
    before = callback.masks[name].clone()
    scores = layer.weight.grad.abs().clone()
    callback.on_before_optimizer_step(SimpleNamespace(global_step=1), model, optimizer)
    grown = callback.masks[name] & ~before
    kept_out = ~callback.masks[name]
    if grown.any() and kept_out.any():
        assert scores[grown].min() >= scores[kept_out].max() - 1e-12


def test_flops_count_the_sparse_steps_and_rigls_dense_gradient():
    callback, model, optimizer = _started("rigl", density=0.3)
    dense = 8 * (4 * 6 * 6 * 9 + 5 * 144)  # MACs of one forward of 8 examples
    sparse = 8 * (4 * 6 * 6 * 9 * 0.3 + 5 * 144 * 0.3)  # uniform 0.3, rounded counts
    model(torch.randn(8, 1, 8, 8)).sum().backward()
    callback.on_before_optimizer_step(SimpleNamespace(global_step=3), model, optimizer)  # an update step
    assert callback.dense_flops == pytest.approx(6 * dense)
    assert callback.flops == pytest.approx(2 * (2 * sparse + dense), rel=0.02)
    static = _started("static", density=0.3)
    static[1](torch.randn(8, 1, 8, 8)).sum().backward()
    static[0].on_before_optimizer_step(SimpleNamespace(global_step=3), static[1], static[2])
    assert static[0].flops == pytest.approx(6 * sparse, rel=0.02)
    assert static[0].updates == 0


def test_the_state_round_trips():
    callback, _, _ = _started("set")
    callback.flops, callback.updates = 12.0, 4
    other = DynamicSparsity(callback.spec, seed=3)
    other.load_state_dict(callback.state_dict())
    assert other.updates == 4 and other.flops == 12.0
    assert all(torch.equal(other.masks[n], m) for n, m in callback.masks.items())
