"""The feed-forward family and predictive coding: with fixed predictions the updates equal
backprop's gradients (MLP and CNN, both output losses, float64); standard predictive coding only
approximates them; inference lowers the energy; every autograd graph spans one layer; real
training steps by both rules; spec validation."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch

from pipeline import plugins
from pipeline.capabilities import Classifier, Encoder
from pipeline.data.datamodule import Splits, TensorDataModule
from pipeline.models.predictive_coding import FeedforwardSpec
from pipeline.models.predictive_coding.module import Feedforward
from pipeline.spec.experiment import DataSpec, TrainSpec
from pipeline.spec.load import SpecError, load_text

SHAPES = {"mlp": ((1, 6, 6), [16, 12, 8]), "cnn": ((2, 8, 8), [3, 4])}


def _tiny(architecture: str, **extra) -> tuple[Feedforward, torch.Tensor, torch.Tensor]:
    """A small network in float64 with a batch of 16 random inputs in 5 classes."""
    shape, widths = SHAPES[architecture]
    torch.manual_seed(0)
    spec = FeedforwardSpec(kind="feedforward", architecture=architecture, widths=widths, **extra)
    model = Feedforward(spec, TrainSpec(), shape, 5).double()
    generator = torch.Generator().manual_seed(1)
    return model, torch.randn(16, *shape, generator=generator, dtype=torch.float64), torch.arange(16) % 5


def _backprop(model: Feedforward, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    model.zero_grad()
    model.loss(model.classify(x), labels).backward()
    return {name: p.grad.clone() for name, p in model.named_parameters()}


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.flatten(), b.flatten()
    return (a @ b / (a.norm() * b.norm())).item()


def _compare(updates: dict, gradients: dict) -> tuple[float, float]:
    """(the smallest cosine over the parameters, the largest relative error)."""
    assert set(updates) == set(gradients)
    return (min(_cosine(updates[n], g) for n, g in gradients.items()),
            max(((updates[n] - g).norm() / g.norm()).item() for n, g in gradients.items()))


def test_the_registry_builds_it():
    assert plugins.models()["feedforward"].load_class() is Feedforward
    assert plugins.models()["feedforward"].provides == (Encoder, Classifier)


@pytest.mark.parametrize("architecture", ["mlp", "cnn"])
@pytest.mark.parametrize("loss", ["cross_entropy", "squared"])
def test_fixed_prediction_updates_equal_backprop_gradients(architecture, loss):
    """Inference_lr 1, T = L - 1 steps: the errors are backprop's deltas, the updates its gradients
    of the same loss (MSE with squared output, cross-entropy with it)."""
    depth = len(SHAPES[architecture][1]) + 1
    model, x, labels = _tiny(architecture, output_loss=loss, fixed_prediction=True, inference_lr=1.0,
                             inference_steps=depth - 1)
    gradients = _backprop(model, x, labels)
    updates = model.pc_updates(model.relax(x, labels))
    for name, g in gradients.items():
        assert g.abs().max() > 0, name
        assert _cosine(updates[name], g) > 0.999, name
        torch.testing.assert_close(updates[name], g, rtol=1e-9, atol=1e-12, msg=name)
    # More steps stay at that fixed point.
    more = model.pc_updates(_relax(model, x, labels, steps=3 * depth))
    assert _compare(more, gradients)[1] < 1e-9


def _relax(model: Feedforward, x, labels, steps: int, **changes):
    from pipeline.models.predictive_coding.module import predictive_coding

    spec = model.spec.model_copy(update={"inference_steps": steps, **changes})
    target = torch.nn.functional.one_hot(labels, 5).to(x.dtype)
    return predictive_coding(model.layers, x, target, spec.inference_steps, spec.inference_lr, spec.fixed_prediction,
                             spec.output_loss)


@pytest.mark.parametrize("architecture", ["mlp", "cnn"])
@pytest.mark.parametrize("loss", ["cross_entropy", "squared"])
def test_standard_predictive_coding_only_approximates_backprop(architecture, loss):
    """Predictions recomputed from the relaxing nodes: after a few small steps the hidden errors
    are still growing (the updates' scale is far off) and the nodes' moves have changed the
    output's error; near equilibrium (200 steps) the direction is still measurably off."""
    model, x, labels = _tiny(architecture, output_loss=loss, fixed_prediction=False, inference_lr=0.1)
    gradients = _backprop(model, x, labels)
    few = _compare(model.pc_updates(_relax(model, x, labels, steps=5)), gradients)
    settled = _compare(model.pc_updates(_relax(model, x, labels, steps=200)), gradients)
    assert few[0] < 0.99
    assert few[1] > 0.3
    assert settled[0] < 0.99
    assert settled[1] > 0.1
    # ... while it does learn in backprop's direction: every update has a positive cosine with it.
    few_updates = model.pc_updates(_relax(model, x, labels, steps=5))
    assert all(_cosine(few_updates[n], g) > 0 for n, g in gradients.items())
    # The same settings with fixed predictions approach backprop as the steps grow.
    fixed = _compare(model.pc_updates(_relax(model, x, labels, steps=200, fixed_prediction=True)), gradients)
    assert fixed[0] > 0.999999
    assert fixed[1] < 1e-6


@pytest.mark.parametrize("architecture", ["mlp", "cnn"])
def test_inference_lowers_the_energy(architecture):
    model, x, labels = _tiny(architecture, fixed_prediction=False, inference_lr=0.1)
    relaxation = _relax(model, x, labels, steps=30)
    energies = relaxation.energies
    assert len(energies) == 31
    assert relaxation.halvings == 0  # plain gradient descent: no step rejected
    assert all(later <= earlier + 1e-12 for earlier, later in zip(energies, energies[1:], strict=False))
    assert energies[-1] < 0.95 * energies[0]
    # At the start (a forward pass) every hidden error is 0: the energy is the output's loss.
    assert energies[0] == pytest.approx(model.loss(model.classify(x), labels).item(), rel=1e-12)


def test_a_step_that_would_raise_the_energy_is_rejected_and_halved():
    """With steps too large for the curvature (inference_lr 1, weights scaled up), plain gradient
    descent on F overshoots: those examples go back and halve their step, and F never rises."""
    model, x, labels = _tiny("mlp", output_loss="squared", fixed_prediction=False)
    with torch.no_grad():
        for layer in model.layers:
            layer.op.weight.mul_(3)
    small = _relax(model, x, labels, steps=30, inference_lr=0.01)
    assert small.halvings == 0
    relaxation = _relax(model, x, labels, steps=30, inference_lr=1.0)
    assert relaxation.halvings > 0
    energies = relaxation.energies
    assert all(later <= earlier * (1 + 1e-5) + 1e-5 for earlier, later in zip(energies, energies[1:], strict=False))
    assert energies[-1] < small.energies[-1]  # and it gets further than tiny steps would


@pytest.mark.parametrize("fixed_prediction", [False, True])
def test_no_autograd_graph_spans_two_layers(fixed_prediction, monkeypatch):
    """Every layer is run on a leaf (its input detached from the layer below), and nothing calls
    backward: each derivative is one layer's."""
    model, x, labels = _tiny("mlp", fixed_prediction=fixed_prediction)
    seen = []

    def check(layer, inputs):
        assert inputs[0].grad_fn is None  # the graph starts here
        seen.append(layer)

    for layer in model.layers:
        layer.register_forward_pre_hook(check)

    def no_backward(*args, **kwargs):
        raise AssertionError("backward through the network")

    monkeypatch.setattr(torch.Tensor, "backward", no_backward)
    monkeypatch.setattr(torch.autograd, "backward", no_backward)
    relaxation = model.relax(x, labels, track_energy=True)
    assert set(map(id, seen)) == set(map(id, model.layers))
    # The update of layer l depends only on e_l and x_{l-1}: recomputed from them alone, it agrees.
    for index, layer in enumerate(model.layers):
        inputs = (relaxation.values[index] if not fixed_prediction else _forward(model, x)[index]).detach()
        prediction = layer(inputs.requires_grad_(False))
        params = dict(layer.named_parameters())
        grads = torch.autograd.grad(prediction, list(params.values()), grad_outputs=-relaxation.errors[index] / 16)
        for (name, _), grad in zip(params.items(), grads, strict=True):
            torch.testing.assert_close(relaxation.updates[index][name], grad)


def _forward(model: Feedforward, x: torch.Tensor) -> list[torch.Tensor]:
    values = [x]
    with torch.no_grad():
        for layer in model.layers:
            values.append(layer(values[-1]))
    return values


def test_features_and_logits():
    model, x, _ = _tiny("cnn")
    assert model.encoder.out_dim == 4 * 2 * 2  # 8x8 halved twice, 4 channels
    assert model.encoder(x).shape == (16, 16)
    assert model.classify(x).shape == (16, 5)
    assert model.predict(x).shape == (16,)


def _images() -> Splits:
    """Images whose class is a bright square's position: learnable in a few steps."""
    generator = torch.Generator().manual_seed(0)

    def make(n: int):
        labels = torch.arange(n) % 4
        images = (torch.rand(n, 1, 12, 12, generator=generator) * 60).to(torch.uint8)
        for i, label in enumerate(labels.tolist()):
            row, col = divmod(label, 2)
            images[i, 0, 6 * row:6 * row + 6, 6 * col:6 * col + 6] = 250
        return images, labels

    return Splits.of_pairs(train=make(256), val=make(64), test=make(64), classes=("a", "b", "c", "d"))


@pytest.mark.parametrize(("architecture", "learning"),
                         [("mlp", "predictive_coding"), ("cnn", "predictive_coding"), ("mlp", "backprop")])
def test_training_through_lightning_learns(architecture, learning):
    pl.seed_everything(0, verbose=False)
    spec = FeedforwardSpec(kind="feedforward", architecture=architecture, widths=[32] if architecture == "mlp" else [4],
                           learning=learning, inference_steps=10)
    train = TrainSpec(max_epochs=3, optimizer={"name": "adam", "lr": 0.003}, scheduler={"name": "none"})
    model = Feedforward(spec, train, (1, 12, 12), 4)
    splits = _images()
    data = TensorDataModule(DataSpec(batch_size=32), seed=0, splits=splits)
    x, labels = splits.pair("val")

    def val_accuracy() -> float:
        with torch.no_grad():
            return (model.predict(x.float() / 255) == labels).float().mean().item()

    before = val_accuracy()
    trainer = pl.Trainer(max_epochs=3, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(model, datamodule=data)
    metrics = trainer.callback_metrics
    assert val_accuracy() > max(0.6, before + 0.2)  # chance: 0.25
    assert metrics["val/accuracy"] > 0.6
    if learning == "predictive_coding":
        assert metrics["train/energy_end"] < metrics["train/energy_start"]


def test_a_pc_step_moves_the_weights_against_the_update():
    """Lightning's backward of as_gradients(updates) leaves each update in .grad: one plain SGD step
    moves every parameter by -lr x update."""
    pl.seed_everything(0, verbose=False)
    train = TrainSpec(max_epochs=1, optimizer={"name": "sgd", "lr": 0.5, "momentum": 0.0, "weight_decay": 0.0},
                      scheduler={"name": "none"})
    model = Feedforward(FeedforwardSpec(kind="feedforward", widths=[16, 8]), train, (1, 12, 12), 4)
    splits = _images()
    x, labels = splits.pair("train")
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    updates = model.pc_updates(model.relax(x.float() / 255, labels))
    data = TensorDataModule(DataSpec(batch_size=256), seed=0, splits=splits)
    pl.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
               enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0).fit(model, datamodule=data)
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.detach(), before[name] - 0.5 * updates[name], msg=name)


def test_spec_validation():
    base = "name: x\ndata: {dataset: fashion_mnist}\nmodel:\n  kind: feedforward\n"
    spec = load_text(base + "  architecture: cnn\n  widths: [8, 16]\n")
    assert spec.model.depth == 3
    assert spec.provides == (Encoder, Classifier)
    with pytest.raises(SpecError) as caught:
        load_text(base + "  architecture: cnn\n  widths: [4, 4, 4, 4, 4, 4]\n", "specs/x.yaml")
    assert "halves the image 6 times" in str(caught.value.problems[0])
    with pytest.raises(SpecError) as caught:
        load_text("name: x\ndata: {dataset: mnist1d}\nmodel: {kind: feedforward}\n", "specs/x.yaml")
    assert "takes image data" in str(caught.value.problems[0])
    with pytest.raises(SpecError):
        load_text(base + "  inference_lr: 1.5\n")
    with pytest.raises(SpecError):
        load_text(base + "  widths: [16, 0]\n")
    with pytest.raises(SpecError):
        load_text(base + "  learning: hebbian\n")
    with pytest.raises(ValueError, match="takes images"):
        FeedforwardSpec(kind="feedforward", architecture="cnn").check_input((1, 40))
    FeedforwardSpec(kind="feedforward").check_input((1, 40))  # an MLP flattens anything
