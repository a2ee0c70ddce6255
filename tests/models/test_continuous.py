"""The neural ODE and the echo state network: the ODE block against a linear ODE's exact solution,
the ResNet block as one Euler step, adjoint gradients against backpropagation through the solver;
the reservoir's echo-state property, spectral radius and seeding, the ridge readout against the
least-squares solution of the stacked data, and ESN training through a Lightning fit, for
classification and forecasting."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from torch import nn

from pipeline import plugins
from pipeline.data.datamodule import Splits, TensorDataModule
from pipeline.models.continuous import ESNSpec, NeuralODESpec
from pipeline.models.continuous.esn import ESN, ReservoirCore, RidgeRegression
from pipeline.models.continuous.ode import NeuralODE, ODEBlock, ResBlock
from pipeline.spec.experiment import DataSpec, ExperimentSpec, TrainSpec

TRAINER = dict(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)

# dh/dt = A h at every position: a damped rotation of the two channels.
A = torch.tensor([[-0.1, -1.0], [1.0, -0.1]], dtype=torch.float64)


class Linear(nn.Module):
    """f(t, h) = A h over the channels, counting its calls as the blocks expect."""

    def __init__(self):
        super().__init__()
        self.nfe = 0

    def forward(self, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        self.nfe += 1
        return torch.einsum("ij,bjl->bil", A, h)


def test_the_registry_builds_them():
    assert plugins.models()["esn"].load_class() is ESN
    assert plugins.models()["neural_ode"].load_class() is NeuralODE


# --- the neural ODE


@pytest.mark.parametrize(("solver", "tolerance", "nfe"), [("dopri5", 1e-6, None), ("rk4", 1e-3, 4 * 8)])
def test_the_ode_block_solves_a_linear_ode(solver, tolerance, nfe):
    """h(t_end) = expm(A t_end) h(0); rk4 takes t_end / step_size steps of 4 evaluations."""
    spec = NeuralODESpec(kind="neural_ode", solver=solver, rtol=1e-9, atol=1e-9, step_size=0.25, t_end=2.0)
    block = ODEBlock(Linear(), spec)
    h0 = torch.randn(3, 2, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    exact = torch.einsum("ij,bjl->bil", torch.linalg.matrix_exp(2.0 * A), h0)
    torch.testing.assert_close(block(h0), exact, rtol=0, atol=tolerance)
    if nfe is not None:
        assert block.nfe == nfe
    assert block.nfe == block.func.nfe > 0


def test_the_resnet_block_is_one_euler_step():
    h0 = torch.randn(3, 2, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    block = ResBlock(Linear())
    torch.testing.assert_close(block(h0), h0 + torch.einsum("ij,bjl->bil", A, h0))
    assert block.nfe == 1


class Smooth(nn.Module):
    """A small conv net f(t, h) with smooth (tanh) dynamics and parameters to differentiate."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv1d(3, 3, 3, padding=1), nn.Conv1d(3, 3, 3, padding=1)
        self.nfe = 0

    def forward(self, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        self.nfe += 1
        return self.conv2(torch.tanh(self.conv1(h)))


def _gradients(model: nn.Module, loss: torch.Tensor) -> dict[str, torch.Tensor]:
    loss.backward()
    return {name: p.grad for name, p in model.named_parameters()}


def test_adjoint_gradients_equal_backpropagation_through_the_solver():
    torch.manual_seed(0)
    direct, adjoint = Smooth().double(), Smooth().double()
    adjoint.load_state_dict(direct.state_dict())
    h0 = torch.randn(4, 3, 8, dtype=torch.float64)
    grads = []
    for func, by_adjoint in ((direct, False), (adjoint, True)):
        block = ODEBlock(func, NeuralODESpec(kind="neural_ode", rtol=1e-7, atol=1e-7, adjoint=by_adjoint))
        grads.append(_gradients(func, block(h0).square().sum()))
    for name, grad in grads[0].items():
        assert grad.abs().max() > 0, name
        torch.testing.assert_close(grads[1][name], grad, rtol=1e-5, atol=1e-5 * grad.abs().max().item(), msg=name)


def test_the_neural_odes_adjoint_gradient_is_close_to_backpropagation():
    """The same through the whole classifier, whose f has a ReLU: at its kinks the adaptive
    solver's steps, and the two gradients, converge slowly with the tolerance (here 1e-7 gives
    a few parts in a thousand; the smooth f above, a few parts in ten million)."""
    torch.manual_seed(0)
    models = [NeuralODE(NeuralODESpec(kind="neural_ode", channels=4, rtol=1e-7, atol=1e-7, adjoint=by_adjoint),
                        TrainSpec(), (2, 8), 3).double() for by_adjoint in (False, True)]
    models[1].load_state_dict(models[0].state_dict())
    inputs, labels = torch.randn(4, 2, 8, dtype=torch.float64), torch.tensor([0, 1, 2, 0])
    direct, adjoint = (torch.cat([grad.flatten() for grad in _gradients(
        model, nn.functional.cross_entropy(model.classify(inputs), labels)).values()]) for model in models)
    assert (adjoint - direct).norm() < 1e-2 * direct.norm()


def _labelled(n: int, length: int, classes: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy sines of a random phase, whose frequency is the class: separable, not trivially."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    phase = 2 * math.pi * torch.rand(n, 1, generator=generator)
    steps = torch.arange(length, dtype=torch.float32)
    inputs = torch.sin(phase + steps * (0.3 + 0.4 * labels[:, None]))
    inputs = inputs + 0.1 * torch.randn(n, length, generator=generator)
    return inputs[:, None], labels


@pytest.mark.parametrize(("block", "nfe"), [("ode", 16), ("resnet", 1)])
def test_the_neural_ode_trains_and_reports_its_network(block, nfe):
    torch.manual_seed(0)
    spec = NeuralODESpec(kind="neural_ode", block=block, channels=8, solver="rk4", step_size=0.25)
    model = NeuralODE(spec, TrainSpec(max_epochs=1), (1, 20), 3)
    data = TensorDataModule(DataSpec(batch_size=16), seed=0, splits=Splits.of_pairs(
        _labelled(32, 20, 3), _labelled(16, 20, 3, seed=1), _labelled(16, 20, 3, seed=2), ("a", "b", "c")))
    trainer = pl.Trainer(max_epochs=1, num_sanity_val_steps=0, enable_checkpointing=False, **TRAINER)
    trainer.fit(model, datamodule=data)
    assert trainer.global_step == 2
    assert trainer.callback_metrics["train/nfe"] == nfe
    model.nfe = 0  # what the network_stats task does before its counted pass
    model.classify(torch.randn(2, 1, 20))
    stats = model.network_stats()
    assert stats["nfe"] == nfe
    assert stats["neurons"] == 8
    assert stats["synapses_used"] == stats["synapses_dense"] == 8 * 1 * 3 + 2 * 8 * 8 * 3
    assert stats["parameters"] == sum(p.numel() for p in model.parameters())


# --- the echo state network


def _reservoir(**extra) -> ReservoirCore:
    return ReservoirCore(ESNSpec(kind="esn", **{"units": 100, **extra}), 1)


def test_the_reservoir_has_the_echo_state_property():
    """Two different states driven by the same input converge: the state forgets its start."""
    torch.manual_seed(0)
    core = _reservoir(spectral_radius=0.9, leak_rate=0.3)
    steps = 300
    inputs = torch.randn(1, steps, 1).expand(2, steps, 1)
    start = 2 * torch.rand(2, 100) - 1
    outputs, _ = core(inputs, torch.ones(2, steps, 1), start)
    distance = (outputs[0] - outputs[1]).norm(dim=1)
    assert distance[-1] < 1e-4 * (start[0] - start[1]).norm()
    assert distance[-1] < 1e-3 * distance[0]


@pytest.mark.parametrize("radius", [0.5, 0.9, 1.3])
def test_the_reservoir_is_scaled_to_its_spectral_radius_and_sparse(radius):
    torch.manual_seed(0)
    core = _reservoir(spectral_radius=radius, connectivity=0.1)
    assert core.spectral_radius() == pytest.approx(radius, rel=1e-6)
    assert torch.count_nonzero(core.w) == 1000
    assert core.synapses() == (1000 + 100, (1 + 100) * 100)
    assert not any(p.requires_grad for p in core.parameters())  # buffers: there are none
    assert set(core.state_dict()) == {"w_in", "bias", "w"}


def test_the_reservoir_is_reproducible_from_the_global_seed():
    torch.manual_seed(1)
    first = _reservoir()
    torch.manual_seed(1)
    second = _reservoir()
    torch.manual_seed(2)
    third = _reservoir()
    for name, value in first.state_dict().items():
        assert torch.equal(value, second.state_dict()[name])
        assert not torch.equal(value, third.state_dict()[name])


def test_the_leak_compounds_over_the_elapsed_time():
    """Over dt the state moves (1 - (1 - a)^dt) of the way to its target, none at dt = 0."""
    torch.manual_seed(0)
    core = _reservoir(leak_rate=0.3)
    x, start = torch.randn(2, 1, 1), torch.rand(2, 100)
    target = torch.tanh(x[:, 0] @ core.w_in.T + core.bias + start @ core.w.T)
    for dt in (0.0, 1.0, 2.5):
        outputs, _ = core(x, torch.full((2, 1, 1), dt), start)
        a = 1 - 0.7**dt
        torch.testing.assert_close(outputs[:, 0], (1 - a) * start + a * target)


@pytest.mark.parametrize("ridge", [0.0, 1e-3, 1.0])
def test_the_ridge_sums_over_batches_give_the_least_squares_solution(ridge):
    """Batched sums, solved, equal lstsq of the stacked rows with a bias column and, for a
    ridge, the rows sqrt(ridge) I (targets 0) appended: the penalised problem as plain least
    squares."""
    generator = torch.Generator().manual_seed(0)
    rows, targets = torch.randn(50, 6, generator=generator), torch.randn(50, 3, generator=generator)
    regression = RidgeRegression(6, 3, torch.device("cpu"))
    for start in range(0, 50, 16):
        regression.add(rows[start:start + 16], targets[start:start + 16])
    weight, bias, mse = regression.solve(ridge)
    design = torch.cat([rows, torch.ones(50, 1)], dim=1).double()
    stacked = torch.cat([design, math.sqrt(ridge) * torch.eye(7, dtype=torch.float64)])
    wanted = torch.linalg.lstsq(stacked, torch.cat([targets.double(), torch.zeros(7, 3, dtype=torch.float64)]))
    torch.testing.assert_close(torch.cat([weight.T, bias[None]]), wanted.solution, rtol=1e-9, atol=1e-12)
    residual = (design @ wanted.solution - targets.double()).square().mean()
    assert mse.item() == pytest.approx(residual.item(), rel=1e-9)


def test_at_ridge_zero_with_fewer_rows_than_features_the_solution_is_the_minimum_norm_one():
    generator = torch.Generator().manual_seed(0)
    rows, targets = torch.randn(5, 10, generator=generator).double(), torch.randn(5, 2, generator=generator).double()
    regression = RidgeRegression(10, 2, torch.device("cpu"))
    regression.add(rows, targets)
    weight, bias, mse = regression.solve(0.0)
    wanted = torch.linalg.pinv(torch.cat([rows, torch.ones(5, 1, dtype=torch.float64)], dim=1)) @ targets
    torch.testing.assert_close(torch.cat([weight.T, bias[None]]), wanted, rtol=1e-6, atol=1e-9)
    assert mse.item() == pytest.approx(0, abs=1e-9)


def _least_squares_readout(model: ESN, fields: dict[str, torch.Tensor], ridge: float) -> torch.Tensor:
    """The readout [features + 1, outputs] fitted on all the fields at once, by lstsq."""
    rows, targets = model.readout_data(fields)
    design = torch.cat([rows, torch.ones(len(rows), 1)], dim=1).double()
    penalty = math.sqrt(ridge) * torch.eye(design.shape[1], dtype=torch.float64)
    padding = torch.zeros(design.shape[1], targets.shape[1], dtype=torch.float64)
    return torch.linalg.lstsq(torch.cat([design, penalty]), torch.cat([targets.double(), padding])).solution


def test_the_esn_trains_through_lightning_as_a_classifier(tmp_path: Path):
    """Two epochs of a Lightning fit: each solves the readout at its last batch, so validation
    sees it and the checkpoint holds it; the second recomputes the first's. The readout is the
    least-squares one of the whole training split, the training split is learnt, and the
    checkpoint (reservoir included) rebuilds the same network under another seed."""
    pl.seed_everything(0, verbose=False)
    spec = ESNSpec(kind="esn", units=60, ridge=1e-3, features="concat", concat_points=3, washout=5)
    model = ESN(spec, TrainSpec(max_epochs=2), (1, 30), 3)
    train = _labelled(96, 30, 3)
    data = TensorDataModule(DataSpec(batch_size=32), seed=0,
                            splits=Splits.of_pairs(train, train, _labelled(30, 30, 3, seed=1), ("a", "b", "c")))
    checkpoints = ModelCheckpoint(dirpath=tmp_path, save_last=True)
    trainer = pl.Trainer(max_epochs=2, num_sanity_val_steps=0, callbacks=[checkpoints], default_root_dir=tmp_path,
                         **TRAINER)
    trainer.fit(model, datamodule=data)
    assert trainer.global_step == 2 * 3  # one (inert) optimiser step per batch
    assert model.encoder.out_dim == model.head.in_features == 3 * 60
    fields = {"input": train[0], "label": train[1]}
    readout = torch.cat([model.head.weight.T, model.head.bias[None]]).double()
    torch.testing.assert_close(readout, _least_squares_readout(model, fields, 1e-3), rtol=1e-4, atol=1e-5)
    accuracy = (model.predict(train[0]) == train[1]).float().mean()
    assert accuracy > 0.9
    assert trainer.callback_metrics["val/accuracy"] == pytest.approx(accuracy.item())
    assert trainer.callback_metrics["train/loss_epoch"] > 0

    pl.seed_everything(1, verbose=False)
    restored = ESN(spec, TrainSpec(), (1, 30), 3)
    assert not torch.equal(restored.encoder.core.w, model.encoder.core.w)
    restored.load_state_dict(torch.load(tmp_path / "last.ckpt", weights_only=False)["state_dict"])
    torch.testing.assert_close(restored.classify(train[0]), model.classify(train[0]))
    stats = model.network_stats()
    assert stats["parameters"] == 3 * 60 * 3 + 3
    assert stats["spectral_radius"] == pytest.approx(0.9, rel=1e-6)


def test_the_esn_fits_its_readout_on_every_training_example_the_last_incomplete_batch_too():
    """Its training phase (what the training stage runs) keeps the batch a gradient fit drops: 100
    examples in batches of 32 give 4 batches, and the readout is the least-squares one of all 100."""
    pl.seed_everything(0, verbose=False)
    spec = ESNSpec(kind="esn", units=30, ridge=1e-3, features="last")
    model = ESN(spec, TrainSpec(max_epochs=1), (1, 12), 3)
    train = _labelled(100, 12, 3)
    splits = Splits.of_pairs(train, train, train, ("a", "b", "c"))
    (phase,) = model.phases(ExperimentSpec(name="e", data=DataSpec(dataset="mnist1d", batch_size=32), model=spec),
                            splits)
    trainer = pl.Trainer(max_epochs=1, num_sanity_val_steps=0, limit_val_batches=0, enable_checkpointing=False,
                         **TRAINER)
    trainer.fit(model, datamodule=phase.data)
    assert trainer.global_step == 4
    readout = torch.cat([model.head.weight.T, model.head.bias[None]]).double()
    fields = {"input": train[0], "label": train[1]}
    torch.testing.assert_close(readout, _least_squares_readout(model, fields, 1e-3), rtol=1e-4, atol=1e-5)
    # A gradient-trained kind's phase drops it, as before.
    assert len(TensorDataModule(DataSpec(batch_size=32), 0, splits).train_dataloader()) == 3


def test_an_esn_resumed_mid_epoch_fits_its_readout_on_the_batches_left(tmp_path: Path):
    """A checkpoint after 2 of 3 batches (checkpoint_every_n_steps: 2): the epoch resumed from
    it, which Lightning starts without on_train_epoch_start, fits the readout on the last batch."""
    spec = ESNSpec(kind="esn", units=20, ridge=1e-2, features="last")
    train = _labelled(48, 10, 2)
    data = TensorDataModule(DataSpec(batch_size=16), seed=0, splits=Splits.of_pairs(train, train, train, ("a", "b")))
    options = dict(max_epochs=1, num_sanity_val_steps=0, limit_val_batches=0, default_root_dir=tmp_path, **TRAINER)
    pl.seed_everything(0, verbose=False)
    whole = ESN(spec, TrainSpec(max_epochs=1), (1, 10), 2)
    every_two = ModelCheckpoint(dirpath=tmp_path, filename="mid", every_n_train_steps=2)
    pl.Trainer(callbacks=[every_two], **options).fit(whole, datamodule=data)
    pl.seed_everything(0, verbose=False)
    resumed = ESN(spec, TrainSpec(max_epochs=1), (1, 10), 2)
    trainer = pl.Trainer(enable_checkpointing=False, **options)
    trainer.fit(resumed, datamodule=data, ckpt_path=tmp_path / "mid.ckpt")
    assert trainer.global_step == 3
    assert resumed.head.weight.abs().sum() > 0
    assert not torch.allclose(resumed.head.weight, whole.head.weight)  # one batch's fit, not three's


def _series(n: int, length: int, offset: float) -> dict[str, torch.Tensor]:
    """Windows of a sum of two sines and, at each step, the next value."""
    start = offset + 7.0 * torch.arange(n, dtype=torch.float32)[:, None]
    t = start + torch.arange(length + 1, dtype=torch.float32)
    values = torch.sin(0.37 * t) + 0.5 * torch.sin(0.11 * t)
    return {"input": values[:, None, :-1], "target": values[:, None, 1:]}


def test_the_esn_trains_through_lightning_as_a_forecaster():
    pl.seed_everything(0, verbose=False)
    spec = ESNSpec(kind="esn", units=80, leak_rate=0.5, input_scaling=0.5, ridge=1e-7, washout=10)
    model = ESN(spec, TrainSpec(max_epochs=1), (1, 60), 0)
    train, val = _series(64, 60, 0.0), _series(16, 60, 1000.0)
    data = TensorDataModule(DataSpec(batch_size=16), seed=0, splits=Splits(train, val, val, None))
    trainer = pl.Trainer(max_epochs=1, num_sanity_val_steps=0, enable_checkpointing=False, **TRAINER)
    trainer.fit(model, datamodule=data)
    predicted, target = model.predict_next(val["input"]), val["target"]
    after_washout = slice(spec.washout, None)
    nrmse = (predicted - target)[..., after_washout].square().mean().sqrt() / target[..., after_washout].std()
    assert nrmse < 0.01
    # Validation reads the fitted readout over every step, the washout's transient included.
    whole = (predicted - target).square().mean().sqrt() / target.std()
    assert trainer.callback_metrics["val/nrmse"].item() == pytest.approx(whole.item(), rel=1e-5)
    assert trainer.callback_metrics["train/loss_epoch"] < 1e-4
    assert model.generate(val["input"], 5).shape == (16, 1, 5)


def test_the_esn_rejects_windows_too_short_for_its_readout():
    with pytest.raises(ValueError, match="washout"):
        ESN(ESNSpec(kind="esn", units=10, washout=40), TrainSpec(), (1, 40), 0)
    with pytest.raises(ValueError, match="concat_points"):
        ESN(ESNSpec(kind="esn", units=10, washout=38, concat_points=4), TrainSpec(), (1, 40), 10)
