"""The LSNN and e-prop: the online update equals the BPTT gradient with the recurrent spikes held
constant; random feedback changes only the learning signal; real training steps by both rules;
the input as a sequence; what the evaluation counts; spec validation."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from pipeline import plugins
from pipeline.data.datamodule import Splits, TensorDataModule
from pipeline.models.spiking import LSNNSpec
from pipeline.models.spiking.lsnn import LSNN
from pipeline.models.spiking.spike_stats import evaluate_spiking
from pipeline.spec.experiment import DataSpec, TrainSpec
from pipeline.spec.load import SpecError, load_text


def _tiny(refractory: int = 0, adaptive_fraction: float = 0.5, input: str = "current", **extra) -> LSNN:
    """8 neurons, 3 input channels, 16 steps, 4 classes, in float64; weights scaled up so that
    every kind of neuron spikes (and the surrogate derivatives are not all zero)."""
    spec = LSNNSpec(kind="lsnn", hidden=8, adaptive_fraction=adaptive_fraction, decision_steps=5, rate_cost=0.5,
                    input=input, delta_threshold=0.3, readout_tau=4.0,
                    neuron={"kind": "alif", "tau_mem": 5.0, "tau_adapt": 10.0, "beta": 0.5,
                            "refractory": refractory}, **extra)
    model = LSNN(spec, TrainSpec(), (3, 16), 4).double()
    with torch.no_grad():
        model.encoder.w_in.mul_(4)
        model.encoder.w_rec.mul_(2)
    return model


def _batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(6, 3, 16, generator=generator, dtype=torch.float64), torch.tensor([0, 1, 2, 3, 0, 1])


def _bptt_gradients(model: LSNN, inputs: torch.Tensor, labels: torch.Tensor, detach_recurrent: bool):
    record = model.encoder.run(inputs, detach_recurrent=detach_recurrent)
    loss, _ = model.objective(model.readout_sequence(record["spikes"]), record["spikes"], labels)
    model.zero_grad()
    loss.backward()
    return loss, {name: p.grad.clone() for name, p in model.named_parameters()}, record


def test_the_registry_builds_it():
    assert plugins.models()["lsnn"].load_class() is LSNN


@pytest.mark.parametrize(("refractory", "adaptive_fraction", "input"),
                         [(0, 0.5, "current"), (2, 0.5, "current"), (0, 0.0, "current"), (0, 1.0, "delta")])
def test_eprop_equals_bptt_with_the_recurrent_spikes_held_constant(refractory, adaptive_fraction, input):
    torch.manual_seed(0)
    model = _tiny(refractory, adaptive_fraction, input)
    x, labels = _batch()
    inputs = model.encoder.sequence(x)
    loss, bptt, record = _bptt_gradients(model, inputs, labels, detach_recurrent=True)
    assert 0.02 < record["spikes"].mean() < 0.5  # both populations in play, not silent or saturated
    eprop_loss, _, _, eprop = model.eprop(inputs, labels)
    assert eprop_loss.item() == pytest.approx(loss.item(), rel=1e-12)
    assert set(eprop) == set(bptt)
    for name, update in eprop.items():
        assert bptt[name].abs().max() > 0, name
        torch.testing.assert_close(update, bptt[name], rtol=1e-9, atol=1e-15, msg=name)


def test_full_bptt_differs_from_eprop_through_the_recurrent_spikes():
    """The equality above is not vacuous: with gradients through z_{t-1}, BPTT's differs."""
    torch.manual_seed(0)
    model = _tiny()
    x, labels = _batch()
    inputs = model.encoder.sequence(x)
    _, full, _ = _bptt_gradients(model, inputs, labels, detach_recurrent=False)
    _, _, _, eprop = model.eprop(inputs, labels)
    assert not torch.allclose(full["encoder.w_rec"], eprop["encoder.w_rec"], rtol=1e-3)
    torch.testing.assert_close(full["readout.weight"], eprop["readout.weight"])  # no recurrence there


def test_random_feedback_changes_only_the_learning_signal():
    torch.manual_seed(0)
    model = _tiny()
    x, labels = _batch()
    inputs = model.encoder.sequence(x)
    _, _, _, symmetric = model.eprop(inputs, labels, feedback="symmetric")
    _, _, _, random = model.eprop(inputs, labels, feedback="random")
    torch.testing.assert_close(random["readout.weight"], symmetric["readout.weight"])
    torch.testing.assert_close(random["readout.bias"], symmetric["readout.bias"])
    assert not torch.allclose(random["encoder.w_in"], symmetric["encoder.w_in"])
    # The random feedback is a fixed buffer (saved with the model, never trained).
    assert "feedback" in dict(model.named_buffers())
    assert "feedback" not in dict(model.named_parameters())
    # Symmetric feedback with B set to W_out^T is the same computation.
    with torch.no_grad():
        model.feedback.copy_(model.readout.weight.T)
    _, _, _, copied = model.eprop(inputs, labels, feedback="random")
    torch.testing.assert_close(copied["encoder.w_in"], symmetric["encoder.w_in"])


def test_no_self_connections():
    torch.manual_seed(0)
    model = _tiny()
    x, labels = _batch()
    _, _, _, eprop = model.eprop(model.encoder.sequence(x), labels)
    assert torch.all(eprop["encoder.w_rec"].diagonal() == 0)
    assert torch.all(model.encoder.weights()[:, 3:].diagonal() == 0)


def test_the_input_as_a_sequence():
    spec = LSNNSpec(kind="lsnn", repeat=2)
    model = LSNN(spec, TrainSpec(), (1, 28, 28), 10)
    images = torch.rand(5, 1, 28, 28)
    steps = model.encoder.sequence(images)
    assert steps.shape == (56, 5, 28)  # rows as time, each held for 2 steps
    torch.testing.assert_close(steps[6], images[:, 0, 3])
    torch.testing.assert_close(steps[7], images[:, 0, 3])
    delta = LSNN(LSNNSpec(kind="lsnn", input="delta", repeat=3, delta_threshold=0.5), TrainSpec(), (1, 40), 10)
    signal = torch.zeros(2, 1, 40)
    signal[:, 0, 10:] = 1.0
    spikes = delta.encoder.sequence(signal)
    assert spikes.shape == (120, 2, 2)  # on/off channels
    assert spikes.sum() == 2
    assert torch.all(spikes[30, :, 0] == 1)  # one "on" spike, first of its 3 steps


def _sequences() -> Splits:
    generator = torch.Generator().manual_seed(0)

    def make(n: int):
        return torch.randn(n, 1, 40, generator=generator) * 2, torch.arange(n) % 10

    return Splits.of_pairs(train=make(64), val=make(32), test=make(32), classes=tuple(str(i) for i in range(10)))


@pytest.mark.parametrize("learning", ["eprop", "bptt"])
def test_a_real_training_step_and_fast_dev_run(learning):
    pl.seed_everything(0, verbose=False)
    spec = LSNNSpec(kind="lsnn", hidden=32, learning=learning)
    model = LSNN(spec, TrainSpec(max_epochs=1), (1, 40), 10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data = TensorDataModule(DataSpec(batch_size=16), seed=0, splits=_sequences())
    options = dict(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                   enable_model_summary=False)
    pl.Trainer(max_steps=1, num_sanity_val_steps=0, limit_val_batches=0, **options).fit(model, datamodule=data)
    changed = {k for k, v in model.state_dict().items() if not torch.equal(before[k], v)}
    assert changed == {"encoder.w_in", "encoder.w_rec", "readout.weight", "readout.bias"}
    pl.Trainer(fast_dev_run=2, **options).fit(LSNN(spec, TrainSpec(max_epochs=1), (1, 40), 10), datamodule=data)


def test_an_eprop_step_moves_the_weights_against_the_update():
    """Lightning's backward of <parameter, update> leaves the update itself in .grad: one SGD
    step (no momentum, no decay) moves every parameter by -lr x update."""
    pl.seed_everything(0, verbose=False)
    train = TrainSpec(max_epochs=1, optimizer={"name": "sgd", "lr": 0.5, "momentum": 0.0, "weight_decay": 0.0},
                      scheduler={"name": "none"})
    model = LSNN(LSNNSpec(kind="lsnn", hidden=32), train, (1, 40), 10)
    data = TensorDataModule(DataSpec(batch_size=64), seed=0, splits=_sequences())
    x, labels = _sequences().pair("train")
    with torch.no_grad():
        before = {k: v.clone() for k, v in model.named_parameters()}
        _, _, _, updates = model.eprop(model.encoder.sequence(x), labels)
    pl.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
               enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0).fit(model, datamodule=data)
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.detach(), before[name] - 0.5 * updates[name], msg=name)


def test_evaluation_counts_spikes_operations_and_energy(tmp_path: Path):
    torch.manual_seed(0)
    spec = LSNNSpec(kind="lsnn", hidden=20, adaptive_fraction=0.5)
    model = LSNN(spec, TrainSpec(), (1, 40), 10).eval()
    with torch.no_grad():
        model.encoder.w_in.mul_(3)
    signals, labels = torch.randn(30, 1, 40) * 2, torch.arange(30) % 10
    metrics, pictures = evaluate_spiking(model, signals, labels, tuple("abcdefghij"), tmp_path)
    with torch.no_grad():
        spikes = model.encoder.run(model.encoder.sequence(signals))["spikes"]
    assert metrics["spikes_per_sample"] == pytest.approx(spikes.sum().item() / 30)
    assert metrics["spikes_per_sample/alif"] == pytest.approx(spikes[:, :, 10:].sum().item() / 30)
    assert metrics["firing_rate/lif"] == pytest.approx(spikes[:, :, :10].mean().item())
    # Same-shaped RNN over 40 steps: (1 input + 20 recurrent) x 20 units, 20 x 10 readout, per step.
    assert metrics["ann_macs_per_sample"] == 40 * (21 * 20 + 20 * 10)
    # Its analog input: 40 steps x 1 x 20 MACs; every recurrent spike reaches the 19 others and 10 outputs.
    assert metrics["snn_macs_per_sample"] == 40 * 20
    assert metrics["synaptic_ops_per_sample"] == pytest.approx(spikes.sum().item() / 30 * (19 + 10))
    # Neuron updates over 40 steps: 20 neurons a multiply and 2 adds, the 10 ALIF another multiply
    # and add; an add per spike, another per ALIF spike; the readout a multiply and an add per
    # output and step, and an add per output and step it is averaged over (all 40).
    alif_spikes = spikes[:, :, 10:].sum().item() / 30
    assert metrics["neuron_update_mults_per_sample"] == pytest.approx(40 * (20 + 10) + 40 * 10)
    assert metrics["neuron_update_adds_per_sample"] == pytest.approx(
        40 * (2 * 20 + 10) + spikes.sum().item() / 30 + alif_spikes + 40 * 10 * 2)
    assert metrics["ann_neuron_ops_per_sample"] == 40 * (2 * 20 + 10)
    assert {p.name for p in pictures} == {"spike_raster.png", "membrane_trace.png"}
    assert all(p.stat().st_size > 1000 for p in pictures)


def test_spec_validation():
    with pytest.raises(SpecError) as caught:
        load_text("name: x\ndata: {dataset: mnist1d}\nmodel:\n  kind: lsnn\n  neuron: {kind: lif}\n", "specs/x.yaml")
    assert "for the LIF-only network set adaptive_fraction: 0" in str(caught.value.problems[0])
    lif_only = "name: x\ndata: {dataset: mnist1d}\nmodel: {kind: lsnn, adaptive_fraction: 0, neuron: {kind: lif}}\n"
    assert load_text(lif_only).model.adaptive == 0
    with pytest.raises(SpecError) as caught:
        load_text("name: x\ndata: {dataset: mnist1d}\nmodel:\n  kind: lsnn\n  decision_steps: 50\n", "specs/x.yaml")
    [problem] = caught.value.problems
    assert str(problem).startswith("specs/x.yaml:3:1: model:")
    assert "decision_steps 50 is longer" in str(problem)
    assert load_text("name: x\ndata: {dataset: fashion_mnist}\nmodel: {kind: lsnn, decision_steps: 28}\n")
