"""Sparse activity and weights: exactly k winners, boosting's formula and its duty cycles, masks
that keep each unit's share of weights and give the masked ones no gradient, and the noise
robustness task's pixel noise and noise score."""

from __future__ import annotations

import math

import pytest
import torch

from pipeline.evaluators.noise_robustness import with_pixels_set
from pipeline.models.sparse import KWinnersSpec, SparseCNNSpec
from pipeline.models.sparse.layers import KWinners, SparseWeights, boost_factors, k_winners, sparse_mask
from pipeline.models.sparse.module import SparseCNN
from pipeline.spec.components import TrainSpec


def test_exactly_k_units_win_and_keep_their_values():
    torch.manual_seed(0)
    x = torch.randn(8, 50)
    out = k_winners(x, 5, torch.ones(50))
    assert ((out != 0).sum(dim=1) == 5).all()
    top = x.topk(5, dim=1)
    assert torch.equal(out.gather(1, top.indices), top.values)


def test_a_conv_layers_winners_are_chosen_over_its_whole_map():
    layer = KWinners(KWinnersSpec(percent_on=0.1, boost_strength=0.0), units=4).train()
    x = torch.rand(3, 4, 5, 5)
    out = layer(x)
    assert out.shape == x.shape and ((out != 0).flatten(1).sum(dim=1) == 10).all()
    layer.eval()  # 1.5x the winners at inference
    assert ((layer(x) != 0).flatten(1).sum(dim=1) == 15).all()


def test_boosting_by_hand_lets_a_rare_unit_win():
    duty = torch.tensor([0.5, 0.0, 0.1])
    boost = boost_factors(duty, target=0.2, strength=2.0)
    assert torch.allclose(boost, torch.exp(torch.tensor([-0.6, 0.4, 0.2])))
    x = torch.tensor([[1.0, 0.7, 0.2]])
    assert torch.equal(k_winners(x, 1, torch.ones(3)), torch.tensor([[1.0, 0.0, 0.0]]))
    # Boosted, 0.7 e^0.8 = 1.56 > 1 e^-1.2 = 0.30: the rarely active unit wins, with its own value.
    assert torch.equal(k_winners(x, 1, boost_factors(duty, 0.2, 4.0)), torch.tensor([[0.0, 0.7, 0.0]]))


def test_duty_cycles_average_activity_over_their_period():
    layer = KWinners(KWinnersSpec(percent_on=0.5, boost_strength=0.0, duty_cycle_period=4), units=2).train()
    layer(torch.tensor([[1.0, -1.0], [1.0, -1.0]]))  # unit 0 active for both
    assert torch.allclose(layer.duty_cycle, torch.tensor([1.0, 0.0]))
    layer(torch.tensor([[-1.0, 1.0], [-1.0, 1.0]]))  # 4 examples seen: each active for 2
    assert torch.allclose(layer.duty_cycle, torch.tensor([0.5, 0.5]))
    layer(torch.tensor([[-1.0, 1.0], [-1.0, 1.0]]))  # the period is full: d (4 - 2) / 4 + counts / 4
    assert torch.allclose(layer.duty_cycle, torch.tensor([0.25, 0.75]))
    layer.boost_strength.fill_(1.5)
    layer.decay_boost()
    assert math.isclose(float(layer.boost_strength), 1.5 * 0.85, rel_tol=1e-6)


@pytest.mark.parametrize("shape", [(20, 30), (8, 4, 5, 5)])
def test_each_unit_keeps_its_share_of_weights(shape):
    mask = sparse_mask(shape, 0.3, torch.Generator().manual_seed(0))
    per_unit = mask.flatten(1).sum(dim=1)
    assert (per_unit == round(0.3 * math.prod(shape[1:]))).all()


def test_masked_weights_are_zero_and_get_no_gradient():
    torch.manual_seed(0)
    layer = SparseWeights(torch.nn.Linear(30, 10), 0.2)
    layer(torch.randn(4, 30)).sum().backward()
    masked = layer.mask == 0
    assert (layer.layer.weight[masked] == 0).all()
    assert (layer.layer.weight.grad[masked] == 0).all() and (layer.layer.weight.grad[~masked] != 0).any()
    assert layer.nonzero() == 10 * 6 + 10


def test_dense_and_sparse_networks_have_the_same_parameters():
    dense = SparseCNN(SparseCNNSpec(kind="sparse_cnn", channels=[4, 8], hidden=20), TrainSpec(), (1, 28, 28), 10)
    sparse = SparseCNN(SparseCNNSpec(kind="sparse_cnn", channels=[4, 8], hidden=20, hidden_density=0.25,
                                     conv_kwinners={"percent_on": 0.1}, hidden_kwinners={"percent_on": 0.2}),
                       TrainSpec(), (1, 28, 28), 10)
    counts, sparse_counts = dense.parameter_counts(), sparse.parameter_counts()
    assert counts["parameters"] == sparse_counts["parameters"] == counts["nonzero_parameters"]
    assert sparse_counts["nonzero_parameters"] == counts["parameters"] - 20 * 8 * 7 * 7 * 3 // 4
    assert sparse.classify(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    assert ((sparse.encoder(torch.rand(5, 1, 28, 28)) != 0).sum(dim=1) <= 4).all()


def test_pixel_noise_sets_exactly_its_share_of_each_image():
    images = torch.zeros(6, 1, 10, 10)
    noisy = with_pixels_set(images, 1, 0.25, 0.75, torch.Generator().manual_seed(0))
    assert ((noisy == 0.75).flatten(1).sum(dim=1) == 25).all()
    assert torch.equal(images, torch.zeros(6, 1, 10, 10))  # a copy
    again = with_pixels_set(images, 1, 0.25, 0.75, torch.Generator().manual_seed(0))
    assert torch.equal(noisy, again)


def test_the_noise_score_sums_correct_classifications_over_levels(tmp_path):
    from types import SimpleNamespace

    from pipeline.evaluators import noise_robustness
    from pipeline.evaluators.specs import NoiseRobustnessSpec

    class Bright(torch.nn.Module):  # class 1 when the image is mostly bright, else 0
        def predict(self, x):
            return (x.flatten(1).mean(dim=1) > 0.5).long()

    inputs = torch.zeros(40, 1, 4, 4, dtype=torch.uint8)
    labels = torch.zeros(40, dtype=torch.long)
    series = []
    ctx = SimpleNamespace(
        trained=Bright(), device="cpu", out=tmp_path, has_validation=False,
        spec=SimpleNamespace(seed=0, name="bright", model=None),
        splits=SimpleNamespace(input_shape=(1, 4, 4), train={"input": inputs}),
        split=lambda name: (inputs, labels), log_series=lambda metrics, step: series.append(metrics))
    task = NoiseRobustnessSpec(noise="pixels", levels=[0.0, 0.25, 0.75], pixel_value=1.0, repeats=1)
    result = noise_robustness.run(task, ctx)
    # Every image is right at 0% and 25% set, wrong at 75%: 40 + 40 + 0.
    assert result.metrics["noise_score"] == 80
    assert result.metrics["accuracy_noise_0.75"] == 0
    with pytest.raises(ValueError, match="shares of the pixels"):
        NoiseRobustnessSpec(noise="pixels", levels=[0.0, 2.0])


def test_the_report_sets_each_sparse_spec_beside_its_dense_twin():
    from pipeline.models.sparse.report import noise_table

    def stats(mean, std=0.01):
        return {"mean": mean, "std": std, "values": [mean]}

    def result(name, accuracy, score):
        return {"spec": name, "model": "sparse_cnn", "runs": [{}, {}, {}], "metrics": {
            "network": {"accuracy": stats(accuracy)},
            "noise_robustness": {"noise_score": stats(score, 100.0), "accuracy_noise_0.5": stats(0.5)}}}

    text = noise_table([result("sparse_cnn_x", 0.9, 80000), result("dense_cnn_x", 0.905, 75000),
                        {"spec": "other", "model": "feedforward", "metrics": {}}])
    row = "| `sparse_cnn_x` | 90.0 ± 1.0% | **80,000 correct ± 100** | 50.0 ± 1.0% | +6.7% | -0.50 points | 3 |"
    assert row in text
    assert "other" not in text
