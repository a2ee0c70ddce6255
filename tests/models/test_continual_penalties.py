"""The regularisation strategies' math as pure functions (`strategies.penalties`): EWC's penalty and
SI's surrogate loss and importance on tiny tensors worked out by hand, zero at the anchor, their
gradients, and equality with the strategies' former inline code on seeded networks."""

from __future__ import annotations

import pytest
import torch

from pipeline.models.continual import ContinualSpec
from pipeline.models.continual.module import Continual
from pipeline.models.continual.strategies import Strategy
from pipeline.models.continual.strategies.penalties import ewc_penalty, si_importance, si_surrogate
from pipeline.spec.experiment import TrainSpec


def _tiny():
    """Two parameter tensors, their anchors and importances: sum F * (theta - theta*)^2 =
    2 * 1^2 + 3 * 2^2 (first) + 4 * 0.5^2 (second) = 14 + 1 = 15."""
    params = [torch.tensor([1.0, 2.0], requires_grad=True), torch.tensor([[0.5]], requires_grad=True)]
    anchors = [torch.tensor([0.0, 0.0]), torch.tensor([[1.0]])]
    importances = [torch.tensor([2.0, 3.0]), torch.tensor([[4.0]])]
    return params, anchors, importances


# --- EWC ---


def test_ewc_penalty_by_hand():
    params, anchors, fishers = _tiny()
    assert ewc_penalty(params, anchors, fishers, 2.0).item() == pytest.approx(0.5 * 2.0 * 15)
    assert ewc_penalty(params, anchors, fishers, 0.1).item() == pytest.approx(0.5 * 0.1 * 15)


def test_ewc_penalty_is_zero_at_the_anchor_and_quadratic_in_the_distance():
    torch.manual_seed(0)
    anchors = [torch.randn(3, 4), torch.randn(5)]
    fishers = [torch.rand(3, 4), torch.rand(5)]
    assert ewc_penalty(anchors, anchors, fishers, 7.0).item() == 0.0
    shift = [torch.randn_like(a) for a in anchors]
    once = ewc_penalty([a + s for a, s in zip(anchors, shift, strict=True)], anchors, fishers, 7.0)
    twice = ewc_penalty([a + 2 * s for a, s in zip(anchors, shift, strict=True)], anchors, fishers, 7.0)
    assert once.item() > 0
    assert twice.item() == pytest.approx(4 * once.item(), rel=1e-5)
    assert ewc_penalty([], [], [], 7.0) == 0.0


def test_ewc_penalty_gradient_pulls_towards_the_anchor():
    params, anchors, fishers = _tiny()
    grads = torch.autograd.grad(ewc_penalty(params, anchors, fishers, 2.0), params)
    for grad, param, anchor, fisher in zip(grads, params, anchors, fishers, strict=True):
        torch.testing.assert_close(grad, 2.0 * fisher * (param.detach() - anchor))  # lambda F (theta - theta*)
        assert (-grad * (anchor - param.detach())).sum() > 0  # descent moves theta towards theta*


def test_ewc_strategy_penalty_is_the_former_inline_sum_bit_for_bit():
    net = _network({"name": "ewc", "ewc_lambda": 3.0})
    strategy = net.strategy
    params = strategy.plastic()
    torch.manual_seed(1)
    names = list(params)
    # Fisher of all but the first parameter: a parameter without one is left out of the sum.
    strategy.keep("fisher_", {n: torch.rand_like(params[n]) for n in names[1:]})
    strategy.keep("anchor_", {n: p + 0.1 * torch.randn_like(p) for n, p in params.items()})
    strategy.consolidated.fill_(True)
    total = 0.0
    for name, p in params.items():
        fisher, anchor = strategy.kept("fisher_", name), strategy.kept("anchor_", name)
        if fisher is not None:
            total = total + (fisher * (p - anchor) ** 2).sum()
    old = 0.5 * strategy.spec.ewc_lambda * total
    new = strategy.penalty()
    assert torch.equal(new, old)
    old_grads = torch.autograd.grad(old, list(params.values()), allow_unused=True)
    new_grads = torch.autograd.grad(new, list(params.values()), allow_unused=True)
    assert all((a is None and b is None) or torch.equal(a, b) for a, b in zip(new_grads, old_grads, strict=True))


# --- SI ---


def test_si_surrogate_by_hand_and_its_gradient():
    params, anchors, importances = _tiny()
    loss = si_surrogate(params, anchors, importances, 0.5)
    assert loss.item() == pytest.approx(0.5 * 15)  # c * sum Omega (theta - theta*)^2, no 1/2
    grads = torch.autograd.grad(loss, params)
    for grad, param, anchor, importance in zip(grads, params, anchors, importances, strict=True):
        torch.testing.assert_close(grad, 2 * 0.5 * importance * (param.detach() - anchor))
    assert si_surrogate(anchors, anchors, importances, 0.5).item() == 0.0


def test_si_importance_by_hand():
    path = torch.tensor([-1.0, 2.0, 3.0, 0.5])
    anchor = torch.tensor([0.0, 1.0, 1.0, -1.0])
    param = torch.tensor([1.0, 1.0, 3.0, -1.0])  # moved by 1, 0, 2, 0
    found = si_importance(path, param, anchor, 0.1)
    # A negative path integral gives nothing; otherwise omega / (change^2 + xi).
    torch.testing.assert_close(found, torch.tensor([0.0, 2.0 / 0.1, 3.0 / 4.1, 0.5 / 0.1]))


def test_si_loss_and_consolidation_are_the_former_inline_code_bit_for_bit():
    net = _network({"name": "si", "si_lambda": 2.0, "xi": 0.1})
    strategy = net.strategy
    params = strategy.plastic()
    torch.manual_seed(2)
    strategy.keep("importance_", {n: torch.rand_like(p) for n, p in params.items()})
    strategy.keep("path_", {n: torch.randn_like(p) for n, p in params.items()})
    with torch.no_grad():
        for p in params.values():
            p.add_(0.05 * torch.randn_like(p))
    batch = {"input": torch.rand(4, 1, 8, 8), "label": torch.tensor([0, 1, 2, 3])}
    penalty = sum((strategy.kept("importance_", n) * (p - strategy.kept("anchor_", n)) ** 2).sum()
                  for n, p in params.items())
    old = Strategy.loss(strategy, batch) + strategy.spec.si_lambda * penalty
    new = strategy.loss(batch)
    assert torch.equal(new, old)
    with torch.no_grad():
        expected = {n: strategy.kept("importance_", n) + strategy.kept("path_", n).clamp(min=0)
                    / ((p - strategy.kept("anchor_", n)) ** 2 + strategy.spec.xi) for n, p in params.items()}
    strategy.end_experience(0)
    for name, p in params.items():
        assert torch.equal(strategy.kept("importance_", name), expected[name])
        assert torch.equal(strategy.kept("anchor_", name), p.detach())
        assert not strategy.kept("path_", name).any()


def _network(strategy: dict) -> Continual:
    spec = ContinualSpec(kind="continual", strategy=strategy, hidden=[8])
    torch.manual_seed(0)
    return Continual(spec, TrainSpec(), (1, 8, 8), 10)
