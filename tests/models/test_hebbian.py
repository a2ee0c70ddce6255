"""The Hebbian family: SoftHebb's and Krotov-Hopfield's updates against hand-computed values, a
conv layer's change against the same rule written with autograd over the convolution, no autograd
graph through a Hebbian layer while it learns, the updates reaching the optimiser unchanged, and a
killed Hebbian training resumed to the same weights."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from pipeline.models.hebbian import HebbianSpec, rules
from pipeline.models.hebbian.module import HebbianNetwork, powered_relu
from pipeline.spec.components import TrainSpec
from tests.conftest import FASHION_MNIST_SYSTEM, needs_fashion_mnist
from tests.test_resume import finish, kill_at_epoch, pipeline


def test_softhebb_update_by_hand():
    x = torch.tensor([[2.0, 1.0]])
    w = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    u = x @ w.T  # [2, 1.5]
    assert torch.allclose(u, torch.tensor([[2.0, 1.5]]))
    # t_invert 2: softmax([4, 3]); the winner (unit 0) keeps +y, the other gets -y.
    y0, y1 = math.exp(4) / (math.exp(4) + math.exp(3)), math.exp(3) / (math.exp(4) + math.exp(3))
    expected = torch.tensor([[y0 * (2 - 2 * 1.0), y0 * (1 - 2 * 0.0)],
                             [-y1 * (2 - 1.5 * 0.5), -y1 * (1 - 1.5 * 0.5)]])
    assert torch.allclose(rules.softhebb(x, w, u, t_invert=2.0), expected, atol=1e-6)


def test_softhebb_sums_over_inputs():
    torch.manual_seed(0)
    x, w = torch.randn(5, 3), torch.randn(4, 3)
    u = x @ w.T
    each = sum(rules.softhebb(x[n:n + 1], w, u[n:n + 1], 0.7) for n in range(5))
    assert torch.allclose(rules.softhebb(x, w, u, 0.7), each, atol=1e-5)


def test_krotov_hopfield_update_by_hand():
    x = torch.tensor([[1.0, 2.0]])
    w = torch.tensor([[2.0, 0.0], [0.0, 1.0], [-1.0, 1.0]])
    # The Lebesgue p=3 inner product: sign(W)|W|^2 . x = [4, 2, 1].
    u = x @ rules.lebesgue(w, 3.0).T
    assert torch.allclose(u, torch.tensor([[4.0, 2.0, 1.0]]))
    change = rules.krotov_hopfield(x, w, u, rank=2, delta=0.4)
    # Unit 0 (most active): x - 4 W_0; unit 1 (ranked 2nd): -0.4 (x - 2 W_1); unit 2: nothing.
    expected = torch.tensor([[1 - 8.0, 2 - 0.0], [-0.4 * (1 - 0.0), -0.4 * (2 - 2.0)], [0.0, 0.0]])
    assert torch.allclose(change, expected)
    # rank 3: the least active of the three is the anti-Hebbian one instead.
    third = rules.krotov_hopfield(x, w, u, rank=3, delta=0.5)
    assert torch.allclose(third[1], torch.zeros(2)) and torch.allclose(third[2], -0.5 * (x[0] - 1.0 * w[2]))


def test_lebesgue_two_is_the_dot_product_and_the_rate_tracks_the_norm():
    w = torch.tensor([[3.0, 4.0], [0.6, 0.8]])
    assert rules.lebesgue(w, 2.0) is w
    assert torch.allclose(rules.adaptive_rate(w, 0.5), torch.tensor([[2.0], [1e-5]]), atol=1e-4)
    assert torch.equal(rules.adaptive_rate(w, 0.0), torch.ones(2, 1))
    change = torch.tensor([[1.0, -4.0], [2.0, 0.5]])
    assert rules.normalised(change).abs().max() == 1 and rules.normalised(change)[0, 1] == -1


def _network(rule: str, **settings) -> HebbianNetwork:
    layers = [{"type": "conv", "units": 6, "kernel": 3, "power": 0.7}, {"type": "dense", "units": 5}]
    spec = HebbianSpec(kind="hebbian", rule=rule, layers=settings.pop("layers", layers), **settings)
    torch.manual_seed(0)
    return HebbianNetwork(spec, TrainSpec(), (2, 8, 8), 3)


@pytest.mark.parametrize("rule", ["softhebb", "krotov_hopfield"])
def test_a_conv_layers_change_is_the_rule_over_every_patch(rule: str):
    """The unfolded patches' update against the rule's two terms written over the convolution
    itself: sum_n y_nk x_n is the weight gradient of sum(u * y)."""
    model = _network(rule)
    layer = model.encoder.layers[0]
    x = torch.rand(4, 2, 8, 8)
    _, change, _ = layer.plastic(x, model.rule(layer))
    z = layer._standardise(x)
    weight = layer.weight.detach().clone().requires_grad_(True)
    padded = F.pad(z, (1, 1, 1, 1), mode="reflect")
    u = F.conv2d(padded, rules.lebesgue(weight, layer.p))
    flat = u.detach().permute(0, 2, 3, 1).reshape(-1, 6)
    if rule == "softhebb":
        y = torch.softmax(flat, dim=1) * torch.where(
            F.one_hot(flat.argmax(1), 6).bool(), 1.0, -1.0)
    else:
        top = flat.topk(2, dim=1).indices
        y = torch.zeros_like(flat).scatter_(1, top[:, 1:2], -model.spec.delta).scatter_(1, top[:, :1], 1.0)
    y_map = y.view(4, 8, 8, 6).permute(0, 3, 1, 2)
    (hebbian,) = torch.autograd.grad((F.conv2d(padded, weight) * y_map).sum(), weight)
    expected = hebbian.view(6, -1) - (y * flat).sum(0)[:, None] * layer.matrix().detach()
    assert torch.allclose(change, expected, atol=1e-4)


@pytest.mark.parametrize("rule", ["softhebb", "krotov_hopfield"])
def test_no_autograd_graph_reaches_a_hebbian_layer_and_the_update_is_the_gradient(rule: str):
    model = _network(rule).train()
    inputs = torch.rand(4, 2, 8, 8, requires_grad=True)
    updates, _ = model.hebbian_updates(inputs)
    assert all(not update.requires_grad and update.grad_fn is None for update in updates.values())
    objective = model.as_gradients(updates)
    objective.backward()
    assert inputs.grad is None  # nothing flowed back to the input, or through any layer
    for name, parameter in model.named_parameters():
        assert torch.equal(parameter.grad, updates[name]), name
    # Normalised: the largest element of a layer's step is lr_scale (1), times SoftHebb's per-unit rate.
    for index, layer in enumerate(model.encoder.layers):
        largest = updates[f"encoder.layers.{index}.weight"].abs().max()
        bound = rules.adaptive_rate(layer.matrix(), 0.5).max() if rule == "softhebb" else 1.0
        assert largest <= bound + 1e-5 and (rule == "softhebb" or math.isclose(largest, 1.0, rel_tol=1e-6))


def test_the_forward_path_is_the_plastic_path_and_differentiable():
    model = _network("softhebb").train()
    x = torch.rand(3, 2, 8, 8)
    h = x
    for layer in model.encoder.layers:
        out, _, _ = layer.plastic(h, model.rule(layer))
        assert torch.allclose(out, layer(h), atol=1e-3 * (1 + out.abs().max().item()))
        h = out
    model.eval()
    features = model.encoder(x.requires_grad_(True))
    features.sum().backward()  # fine-tuning runs backprop through the same layers: finite everywhere
    assert torch.isfinite(x.grad).all()
    assert torch.isfinite(powered_relu(torch.tensor([0.0, -1.0, 2.0], requires_grad=True), 0.7).sum())


def test_softhebb_shrinks_the_norms_towards_one():
    torch.manual_seed(0)
    spec = HebbianSpec(kind="hebbian", layers=[{"type": "dense", "units": 8}], init_scale=5.0)
    model = HebbianNetwork(spec, TrainSpec(), (1, 4, 4), 2).train()
    start = model.encoder.layers[0].matrix().norm(dim=1)
    for _ in range(200):
        updates, _ = model.hebbian_updates(torch.rand(16, 1, 4, 4))
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                parameter -= 0.05 * updates[name]
    end = model.encoder.layers[0].matrix().norm(dim=1)
    assert ((end - 1).abs() < (start - 1).abs()).all()


def test_the_spec_rejects_what_cannot_be_built():
    with pytest.raises(ValueError, match="kernel must be odd"):
        HebbianSpec(kind="hebbian", layers=[{"units": 4, "kernel": 4}])
    with pytest.raises(ValueError, match="cannot follow a dense"):
        HebbianSpec(kind="hebbian", layers=[{"type": "dense", "units": 4}, {"type": "conv", "units": 4}])
    with pytest.raises(ValueError, match="images"):
        HebbianSpec(kind="hebbian", layers=[{"units": 4}]).check_input((40,))


QUICK = """\
name: hebbian_resume
data: {dataset: fashion_mnist, train_subset: 600, probe_subset: 600, eval_subset: 200, batch_size: 20}
model:
  kind: hebbian
  rule: softhebb
  layers: [{type: conv, units: 8, kernel: 3}, {type: dense, units: 16}]
  probe_examples: 200
train: {max_epochs: 6, checkpoint_min_interval_s: 0, optimizer: {name: sgd, lr: 0.05, momentum: 0.0,
        weight_decay: 0.0}}
"""


def _project(root: Path) -> Path:
    from pipeline import plugins
    from pipeline.data.fetch import fetch_dataset

    (root / "specs").mkdir(parents=True)
    (root / "dvc.yaml").write_text("stages: {}\n")
    fetch_dataset(plugins.datasets()["fashion_mnist"], root=root / "data")
    (root / "specs" / "hebbian_resume.yaml").write_text(QUICK)
    return root


def _probe_history(root: Path) -> list[tuple[int, float]]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    [run] = client.search_runs([client.get_experiment_by_name("hebbian_resume").experiment_id])
    assert run.info.status == "FINISHED"
    return sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, "val/probe_accuracy"))


@pytest.mark.slow
@needs_fashion_mnist
def test_a_killed_hebbian_training_resumes_to_the_same_weights(tmp_path: Path):
    assert FASHION_MNIST_SYSTEM.is_dir()
    reference = _project(tmp_path / "reference")
    finish(pipeline(reference, "pretrain", "specs/hebbian_resume.yaml"))
    killed = _project(tmp_path / "killed")
    process = pipeline(killed, "pretrain", "specs/hebbian_resume.yaml")
    kill_at_epoch(process, killed / "artifacts" / "hebbian_resume" / "pretrain" / "checkpoints" / "last.ckpt")
    assert "resuming from" in finish(pipeline(killed, "pretrain", "specs/hebbian_resume.yaml", "--auto-resume"))
    mine = torch.load(killed / "artifacts/hebbian_resume/pretrain/encoder.pt", weights_only=True)
    theirs = torch.load(reference / "artifacts/hebbian_resume/pretrain/encoder.pt", weights_only=True)
    assert mine.keys() == theirs.keys()
    for key, value in theirs.items():
        assert torch.equal(mine[key], value), key
    assert _probe_history(killed) == _probe_history(reference)
    assert len(_probe_history(reference)) == 7  # untrained, then after each of the 6 epochs
