"""The meta-learning algorithms of pipeline/models/meta/algorithms.py against hand derivations
(float64): MAML's meta-gradient on a linear model, FOMAML's, Meta-SGD's and ANIL's, iMAML's
implicit gradient on quadratics, Reptile's direction, the prototypes' logits; one vmap over the
tasks against the per-task loop on a small conv net; loss_of and the composite norms."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import vmap

from pipeline.models.meta.algorithms import (
    CompositeNorms,
    accuracy,
    adapt,
    adapted_losses,
    imaml_hypergradient,
    loss_of,
    named_params,
    prototype_logits,
    reptile_direction,
)

DOUBLE = torch.float64


def linear_mse(params, inputs, targets):
    return ((inputs @ params["w"] - targets) ** 2).mean()


def linear_grad(w, x, y):
    return 2 / len(x) * x.T @ (x @ w - y)


def linear_hessian(x):
    return 2 / len(x) * x.T @ x


def meta_batch(tasks=3, dim=4, support=6, query=8, seed=0):
    generator = torch.Generator().manual_seed(seed)

    def draw(*shape):
        return torch.randn(*shape, generator=generator, dtype=DOUBLE)

    return draw(dim), draw(tasks, support, dim), draw(tasks, support), draw(tasks, query, dim), draw(tasks, query)


def sgd(w, x, y, lr, steps):
    for _ in range(steps):
        w = w - lr * linear_grad(w, x, y)
    return w


@pytest.mark.parametrize("vectorise", [True, False])
@pytest.mark.parametrize("steps", [1, 2])
def test_maml_meta_gradient_of_a_linear_model(steps, vectorise):
    """phi = w - a g_s(w) per step; H_s is constant, so d L_q(phi) / dw = (I - a H_s)^steps g_q(phi)."""
    w0, sx, sy, qx, qy = meta_batch()
    lr = 0.1
    w = w0.clone().requires_grad_()
    losses = adapted_losses(linear_mse, {"w": w}, sx, sy, qx, qy, steps=steps, lr=lr, vectorise=vectorise)
    losses.mean().backward()
    expected, expected_losses = [], []
    for t in range(len(sx)):
        phi = sgd(w0, sx[t], sy[t], lr, steps)
        jacobian = torch.linalg.matrix_power(torch.eye(4, dtype=DOUBLE) - lr * linear_hessian(sx[t]), steps)
        expected.append(jacobian.T @ linear_grad(phi, qx[t], qy[t]))
        expected_losses.append(linear_mse({"w": phi}, qx[t], qy[t]))
    torch.testing.assert_close(losses.detach(), torch.stack(expected_losses), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(w.grad, torch.stack(expected).mean(0), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("vectorise", [True, False])
def test_first_order_drops_the_hessian_term(vectorise):
    w0, sx, sy, qx, qy = meta_batch()
    w = w0.clone().requires_grad_()
    adapted_losses(linear_mse, {"w": w}, sx, sy, qx, qy, steps=2, lr=0.1, first_order=True,
                   vectorise=vectorise).mean().backward()
    expected = torch.stack([linear_grad(sgd(w0, sx[t], sy[t], 0.1, 2), qx[t], qy[t]) for t in range(len(sx))])
    torch.testing.assert_close(w.grad, expected.mean(0), rtol=1e-12, atol=1e-12)


def test_adapt_moves_only_what_it_is_told():
    w0, sx, sy, _, _ = meta_batch()
    params = {"w": w0}
    assert adapt(linear_mse, params, sx[0], sy[0], steps=0, lr=0.1) == params
    torch.testing.assert_close(adapt(linear_mse, params, sx[0], sy[0], steps=3, lr=0.1)["w"],
                               sgd(w0, sx[0], sy[0], 0.1, 3))
    with pytest.raises(ValueError, match="not among the params"):
        adapt(linear_mse, params, sx[0], sy[0], steps=1, lr=0.1, names=["head.weight"])
    with pytest.raises(ValueError, match="no learning rate"):
        adapt(linear_mse, params, sx[0], sy[0], steps=1, lr=0.1, lrs={})


def quadratic(params, inputs, targets):
    """1/2 w^T A w - b^T w, A given as the inputs [d, d], b as the targets [d]."""
    w = params["w"]
    return 0.5 * w @ inputs @ w - targets @ w


@pytest.mark.parametrize("vectorise", [True, False])
def test_imaml_hypergradient_is_the_implicit_gradient_of_quadratics(vectorise):
    """L_s = 1/2 phi^T A phi - b^T phi: the proximal solution solves (A + lam I) phi* = b + lam theta;
    the implicit gradient is (I + A/lam)^-1 grad L_q(phi*), L_q = 1/2 phi^T C phi - e^T phi."""
    tasks, dim, lam = 3, 4, 2.0
    generator = torch.Generator().manual_seed(1)

    def spd():
        m = torch.randn(tasks, dim, dim, generator=generator, dtype=DOUBLE)
        return m @ m.transpose(1, 2) / dim + 0.5 * torch.eye(dim, dtype=DOUBLE)

    a, c = spd(), spd()
    b, e = (torch.randn(tasks, dim, generator=generator, dtype=DOUBLE) for _ in range(2))
    theta = torch.randn(dim, generator=generator, dtype=DOUBLE)
    lr = 1 / (torch.linalg.eigvalsh(a).max().item() + lam)  # the proximal objective's curvature
    eye = torch.eye(dim, dtype=DOUBLE)
    hypergradient, losses = imaml_hypergradient(quadratic, {"w": theta.clone().requires_grad_()}, a, b, c, e,
                                                steps=400, lr=lr, lam=lam, cg_steps=dim + 2, vectorise=vectorise)
    expected, expected_losses = [], []
    for t in range(tasks):
        phi = torch.linalg.solve(a[t] + lam * eye, b[t] + lam * theta)
        expected.append(torch.linalg.solve(eye + a[t] / lam, c[t] @ phi - e[t]))
        expected_losses.append(quadratic({"w": phi}, c[t], e[t]))
    torch.testing.assert_close(hypergradient["w"], torch.stack(expected).mean(0), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(losses, torch.stack(expected_losses), rtol=1e-10, atol=1e-10)
    assert not hypergradient["w"].requires_grad and not losses.requires_grad


# The minibatches of 6 examples in 3s, of 5 in 2s.
MINIBATCHES = {None: [slice(None)], 3: [slice(0, 3), slice(3, 6)], 2: [slice(0, 2), slice(2, 4), slice(4, 5)]}


@pytest.mark.parametrize("vectorise", [True, False])
@pytest.mark.parametrize(("steps", "batch_size", "support"), [(1, None, 6), (2, None, 6), (2, 3, 6), (3, 3, 6),
                                                                (3, 2, 5)])
def test_reptile_direction_by_hand(steps, batch_size, support, vectorise):
    """Step k on the k-th minibatch, cycling (5 examples in 2s: [0, 2), [2, 4), [4, 5))."""
    w0, x, y, _, _ = meta_batch(support=support)
    lr = 0.05
    direction = reptile_direction(linear_mse, {"w": w0.clone().requires_grad_()}, x, y, steps=steps, lr=lr,
                                  batch_size=batch_size, vectorise=vectorise)
    expected = []
    for t in range(len(x)):
        phi = w0
        for step in range(steps):
            minibatches = MINIBATCHES[batch_size]
            index = minibatches[step % len(minibatches)]
            phi = phi - lr * linear_grad(phi, x[t][index], y[t][index])
        expected.append(w0 - phi)
    if steps == 1 and batch_size is None:  # one step: lr times the mean gradient
        torch.testing.assert_close(direction["w"], lr * torch.stack([linear_grad(w0, x[t], y[t]) for t in range(3)])
                                   .mean(0), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(direction["w"], torch.stack(expected).mean(0), rtol=1e-12, atol=1e-12)
    assert not direction["w"].requires_grad


def conv_net(norm=lambda channels: nn.BatchNorm2d(channels, track_running_stats=False)) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), norm(4), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(4, 4, 3, padding=1), norm(4), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(16, 3)).to(DOUBLE)


def episodes(tasks=4, ways=3, shots=2, queries=3, seed=0):
    generator = torch.Generator().manual_seed(seed)
    support_y = torch.arange(ways).repeat_interleave(shots).repeat(tasks, 1)
    query_y = torch.arange(ways).repeat_interleave(queries).repeat(tasks, 1)
    return (torch.randn(tasks, ways * shots, 1, 8, 8, generator=generator, dtype=DOUBLE), support_y,
            torch.randn(tasks, ways * queries, 1, 8, 8, generator=generator, dtype=DOUBLE), query_y)


def grads_of(module):
    out = {name: param.grad.clone() for name, param in module.named_parameters()}
    module.zero_grad()
    return out


def assert_same(a, b, tolerance=1e-10):
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=tolerance, atol=tolerance, msg=name)


@pytest.mark.parametrize("first_order", [False, True])
def test_vmap_equals_the_loop_on_a_conv_net(first_order):
    net = conv_net()
    params, loss_fn, batch = named_params(net), loss_of(net), episodes()
    results = []
    for vectorise in (True, False):
        losses = adapted_losses(loss_fn, params, *batch, steps=2, lr=0.3, first_order=first_order,
                                vectorise=vectorise)
        losses.mean().backward()
        results.append((losses.detach(), grads_of(net)))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-10, atol=1e-10)
    assert_same(results[0][1], results[1][1])
    assert all(grad.abs().sum() > 0 for grad in results[0][1].values())


def test_vmap_equals_the_loop_for_reptile_and_imaml():
    net = conv_net()
    params, loss_fn, batch = named_params(net), loss_of(net), episodes()
    reptile = [reptile_direction(loss_fn, params, batch[0], batch[1], steps=3, lr=0.1, batch_size=4,
                                 vectorise=vectorise) for vectorise in (True, False)]
    assert_same(*reptile)
    imaml = [imaml_hypergradient(loss_fn, params, *batch, steps=3, lr=0.1, lam=1.0, cg_steps=3, vectorise=vectorise)
             for vectorise in (True, False)]
    assert_same(imaml[0][0], imaml[1][0])
    torch.testing.assert_close(imaml[0][1], imaml[1][1])
    assert net.get_parameter("0.weight").grad is None  # neither touches the params' .grad


def test_query_fn_returns_loss_and_accuracy_of_the_same_adaptation():
    net = conv_net()
    params, batch = named_params(net), episodes()
    both = loss_of(net, lambda logits, targets: (F.cross_entropy(logits, targets), accuracy(logits, targets)))
    for vectorise in (True, False):
        losses, accuracies = adapted_losses(loss_of(net), params, *batch, steps=1, lr=0.3, vectorise=vectorise,
                                            query_fn=both)
        alone = adapted_losses(loss_of(net), params, *batch, steps=1, lr=0.3, vectorise=vectorise)
        torch.testing.assert_close(losses, alone)
        assert accuracies.shape == (4,) and ((accuracies >= 0) & (accuracies <= 1)).all()


@pytest.mark.parametrize("norm", [lambda c: nn.BatchNorm2d(c, track_running_stats=False),
                                  lambda c: nn.InstanceNorm2d(c, affine=True), lambda c: nn.GroupNorm(2, c)],
                         ids=["batch", "instance", "group"])
def test_composite_norms_under_vmap_match_the_fused_kernels_in_a_loop(norm):
    """The fused kernels are right outside vmap, in second order too: the reference."""
    net = conv_net(norm)
    params, batch = named_params(net), episodes()
    adapted_losses(loss_of(net, composite_norms=False), params, *batch, steps=2, lr=0.3,
                   vectorise=False).mean().backward()
    reference = grads_of(net)
    adapted_losses(loss_of(net), params, *batch, steps=2, lr=0.3).mean().backward()
    assert_same(grads_of(net), reference)


def test_composite_layer_norm_under_vmap_matches_the_fused_kernel_in_a_loop():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 8), nn.LayerNorm(8), nn.Tanh(), nn.Linear(8, 3)).to(DOUBLE)
    generator = torch.Generator().manual_seed(0)
    sx, qx = (torch.randn(4, 9, 6, generator=generator, dtype=DOUBLE) for _ in range(2))
    sy = qy = torch.arange(3).repeat(4, 3)
    params = named_params(net)
    adapted_losses(loss_of(net, composite_norms=False), params, sx, sy, qx, qy, steps=2, lr=0.5,
                   vectorise=False).mean().backward()
    reference = grads_of(net)
    adapted_losses(loss_of(net), params, sx, sy, qx, qy, steps=2, lr=0.5).mean().backward()
    assert_same(grads_of(net), reference)


def test_composite_layer_norm_and_running_statistics():
    x = torch.randn(3, 4, 5, dtype=DOUBLE)
    weight, bias = torch.randn(5, dtype=DOUBLE), torch.randn(5, dtype=DOUBLE)
    mean, var = torch.randn(4, dtype=DOUBLE), torch.rand(4, dtype=DOUBLE) + 0.5
    expected = (F.layer_norm(x, [5], weight, bias), F.batch_norm(x, mean, var, weight[:4], bias[:4], training=False))
    with CompositeNorms():
        found = (F.layer_norm(x, [5], weight, bias), F.batch_norm(x, mean, var, weight[:4], bias[:4], training=False))
    for a, b in zip(found, expected, strict=True):
        torch.testing.assert_close(a, b)


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3)).to(DOUBLE)


def test_anil_moves_the_head_only_and_the_body_still_learns():
    net = mlp()
    params, loss_fn = named_params(net), loss_of(net)
    generator = torch.Generator().manual_seed(0)
    sx, qx = (torch.randn(4, 9, 6, generator=generator, dtype=DOUBLE) for _ in range(2))
    sy = qy = torch.arange(3).repeat(4, 3)
    head = ["2.weight", "2.bias"]
    adapted = adapt(loss_fn, params, sx[0], sy[0], steps=2, lr=0.5, names=head)
    assert adapted["0.weight"] is params["0.weight"] and adapted["0.bias"] is params["0.bias"]
    assert not torch.equal(adapted["2.weight"], params["2.weight"])
    grads = []
    for vectorise in (True, False):
        adapted_losses(loss_fn, params, sx, sy, qx, qy, steps=2, lr=0.5, names=head,
                       vectorise=vectorise).mean().backward()
        grads.append(grads_of(net))
    assert_same(*grads)
    assert grads[0]["0.weight"].abs().sum() > 0 and grads[0]["2.weight"].abs().sum() > 0


@pytest.mark.parametrize("vectorise", [True, False])
def test_meta_sgd_gradients_reach_the_learning_rates(vectorise):
    """One step phi = w - alpha * g_s(w): dL_q/dalpha = -g_q(phi) * g_s(w) and
    dL_q/dw = (I - H_s diag(alpha)) g_q(phi), per task, averaged."""
    w0, sx, sy, qx, qy = meta_batch()
    alpha0 = torch.tensor([0.05, 0.1, 0.15, 0.2], dtype=DOUBLE)
    w, alpha = w0.clone().requires_grad_(), alpha0.clone().requires_grad_()
    adapted_losses(linear_mse, {"w": w}, sx, sy, qx, qy, steps=1, lr=0.0, lrs={"w": alpha},
                   vectorise=vectorise).mean().backward()
    d_alpha, d_w = [], []
    for t in range(len(sx)):
        g_s = linear_grad(w0, sx[t], sy[t])
        g_q = linear_grad(w0 - alpha0 * g_s, qx[t], qy[t])
        d_alpha.append(-g_q * g_s)
        d_w.append((torch.eye(4, dtype=DOUBLE) - linear_hessian(sx[t]) * alpha0) @ g_q)
    torch.testing.assert_close(alpha.grad, torch.stack(d_alpha).mean(0), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(w.grad, torch.stack(d_w).mean(0), rtol=1e-12, atol=1e-12)


def test_prototype_logits_by_hand():
    support = torch.tensor([[0.0, 0.0], [6.0, 6.0], [2.0, 0.0], [0.0, 4.0], [6.0, 6.0]])
    labels = torch.tensor([0, 2, 0, 1, 2])  # prototypes (1, 0), (0, 4), (6, 6)
    queries = torch.tensor([[1.0, 1.0], [0.0, 3.0], [5.0, 6.0]])
    logits = prototype_logits(support, labels, queries, ways=3)
    expected = -torch.tensor([[1.0, 10.0, 50.0], [10.0, 1.0, 45.0], [52.0, 29.0, 1.0]])
    torch.testing.assert_close(logits, expected)
    assert logits.argmax(1).tolist() == [0, 1, 2]
    # Batched over a leading task axis, and under vmap: each task on its own prototypes.
    generator = torch.Generator().manual_seed(0)
    s, q = torch.randn(4, 6, 5, generator=generator), torch.randn(4, 7, 5, generator=generator)
    y = torch.tensor([2, 0, 1, 1, 0, 2])
    batched = prototype_logits(s, y, q, ways=3)
    assert batched.shape == (4, 7, 3)
    torch.testing.assert_close(vmap(prototype_logits, in_dims=(0, None, 0, None))(s, y, q, 3), batched)
    for t in range(4):
        torch.testing.assert_close(batched[t], prototype_logits(s[t], y, q[t], ways=3))


def test_loss_of_refuses_running_statistics_and_normalises_per_task():
    tracking = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(72, 3))
    with pytest.raises(ValueError, match="1: batch norm tracking running statistics"):
        loss_of(tracking)
    net = conv_net()
    loss_fn, (x, y, _, _) = loss_of(net), episodes()
    per_task = vmap(loss_fn, in_dims=(None, 0, 0))(named_params(net), x, y)
    torch.testing.assert_close(per_task, torch.stack([loss_fn(named_params(net), x[t], y[t]) for t in range(4)]))
    # Each task on its own statistics: not the same as normalising the whole meta-batch at once.
    pooled = F.cross_entropy(net(x.flatten(0, 1)), y.flatten(), reduction="none").view(4, -1).mean(1)
    assert not torch.allclose(per_task, pooled)
