"""The temporal-coding network: Lambert W, closed-form spike times against a fine simulation of
the membrane potential, exact gradients against finite differences, training steps, what the
evaluation reports, and spec validation."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from pipeline import plugins
from pipeline.data.datamodule import Splits, TensorDataModule
from pipeline.models.spiking import SNNTemporalSpec
from pipeline.models.spiking.spike_stats import evaluate_spiking
from pipeline.models.spiking.temporal import SNNTemporal, first_spike_times, lambert_w0, potential
from pipeline.spec.experiment import DataSpec, TrainSpec
from pipeline.spec.load import SpecError, load_text

SMALL = SNNTemporalSpec(kind="snn_temporal", hidden=[24], sync_pulses=3)
STRONG = SMALL.model_copy(update={"pulse_strength": 2.0})  # the pulses alone make every neuron fire


def test_the_registry_builds_it():
    assert plugins.models()["snn_temporal"].load_class() is SNNTemporal


def test_lambert_w0_solves_its_equation_across_the_branch():
    z = torch.cat([torch.linspace(-math.exp(-1), 0, 2001, dtype=torch.float64),
                   -math.exp(-1) + torch.logspace(-12, -3, 50, dtype=torch.float64)])
    w = lambert_w0(z)
    assert torch.all((w >= -1) & (w <= 0))
    torch.testing.assert_close(w * torch.exp(w), z, rtol=0, atol=1e-14)
    assert w[0].item() == pytest.approx(-1)
    assert lambert_w0(torch.tensor([0.0])).item() == 0
    # W0'(z) = W / (z (1 + W)), away from the branch point and 0.
    zz = torch.tensor([-0.3, -0.1, -0.01], dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(lambert_w0(zz).sum(), zz)
    ww = lambert_w0(zz.detach())
    torch.testing.assert_close(grad, ww / (zz.detach() * (1 + ww)))


def _case(seed: int, batch: int = 4, inputs: int = 7, outputs: int = 5):
    generator = torch.Generator().manual_seed(seed)
    times = torch.rand(batch, inputs, generator=generator, dtype=torch.float64) * 3
    times[0, 2] = math.inf  # inputs that never spike
    times[1, :3] = math.inf
    weights = torch.randn(inputs, outputs, generator=generator, dtype=torch.float64) * 0.8 + 0.5
    return times, weights


def _simulated(times: torch.Tensor, weights: torch.Tensor, decay: float, threshold: float, dt: float = 1e-4):
    """First crossing of the threshold on a grid of step dt (inf when it never crosses)."""
    grid = torch.arange(0, 20, dt, dtype=torch.float64)
    out = []
    for row in times:
        fired = torch.isfinite(row)
        above = potential(grid, row[fired], weights[fired], decay) >= threshold
        out.append(torch.where(above.any(0), grid[above.to(torch.uint8).argmax(0)],
                               torch.tensor(math.inf, dtype=torch.float64)))
    return torch.stack(out)


@pytest.mark.parametrize(("seed", "decay", "threshold"), [(0, 1.0, 1.0), (1, 2.0, 0.5), (2, 0.5, 1.5), (3, 1.0, 1.0)])
def test_closed_form_spike_times_equal_a_fine_simulation(seed, decay, threshold):
    times, weights = _case(seed)
    closed = first_spike_times(times, weights, decay, threshold)
    simulated = _simulated(times, weights, decay, threshold)
    assert torch.isfinite(closed).any()
    assert torch.isinf(closed).any()  # both outcomes are covered
    assert torch.equal(torch.isinf(closed), torch.isinf(simulated))
    fired = torch.isfinite(closed)
    assert (closed[fired] - simulated[fired]).abs().max() < 2e-4  # the grid's step
    # The potential at the closed-form time is the threshold itself.
    for b, m in torch.nonzero(fired).tolist():
        row = times[b]
        spiked = torch.isfinite(row)
        here = potential(closed[b, m].reshape(1), row[spiked], weights[spiked, m:m + 1], decay)
        assert here.item() == pytest.approx(threshold, abs=1e-10)


def test_gradients_with_respect_to_weights_and_input_times_match_finite_differences():
    times, weights = _case(0)
    finite = torch.isfinite(times)

    def spike_times(spiking: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        full = times.clone()
        full[finite] = spiking
        out = first_spike_times(full, w, 1.0, 1.0)
        return torch.where(torch.isfinite(out), out, torch.zeros_like(out))

    spiking = times[finite].clone().requires_grad_()
    w = weights.clone().requires_grad_()
    assert torch.isfinite(first_spike_times(times, weights, 1.0, 1.0)).sum() >= 8
    assert torch.autograd.gradcheck(spike_times, (spiking, w), eps=1e-7, atol=1e-6, rtol=1e-5)


def test_a_spike_depends_only_on_the_inputs_before_it():
    times, weights = _case(0)
    out = first_spike_times(times, weights, 1.0, 1.0)
    b, m = torch.nonzero(torch.isfinite(out))[0].tolist()
    later = times.clone()
    after = times[b] > out[b, m]
    later[b, after] = later[b, after] + 5  # move the inputs that came after the spike
    assert first_spike_times(later, weights, 1.0, 1.0)[b, m] == out[b, m]


def _images() -> Splits:
    generator = torch.Generator().manual_seed(0)

    def make(n: int):
        return torch.randint(0, 256, (n, 1, 28, 28), generator=generator, dtype=torch.uint8), torch.arange(n) % 10

    return Splits.of_pairs(train=make(64), val=make(32), test=make(32), classes=tuple(str(i) for i in range(10)))


def test_a_real_training_step_and_fast_dev_run():
    pl.seed_everything(0, verbose=False)
    model = SNNTemporal(SMALL, TrainSpec(max_epochs=1), (1, 28, 28), 10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data = TensorDataModule(DataSpec(batch_size=16), seed=0, splits=_images())
    options = dict(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                   enable_model_summary=False)
    pl.Trainer(max_steps=1, num_sanity_val_steps=0, limit_val_batches=0, **options).fit(model, datamodule=data)
    changed = {k for k, v in model.state_dict().items() if not torch.equal(before[k], v)}
    # Weights and the synchronisation pulses' times, in both layers.
    assert {"encoder.layers.0.weight", "encoder.layers.0.pulse_times", "output.weight", "output.pulse_times"} <= changed
    pl.Trainer(fast_dev_run=2, **options).fit(SNNTemporal(SMALL, TrainSpec(max_epochs=1), (1, 28, 28), 10),
                                              datamodule=data)


def test_strong_pulses_make_every_neuron_fire_and_the_first_spike_decides():
    torch.manual_seed(0)
    model = SNNTemporal(STRONG, TrainSpec(), (1, 28, 28), 10)
    images = torch.rand(8, 1, 28, 28)
    times, output = model.output_times(images)
    assert torch.isfinite(times[1]).all()
    assert torch.isfinite(output).all()  # the pulses alone reach threshold
    assert torch.equal(model.decide(output), output.argmin(dim=1))
    silent = output.clone()
    silent[0] = math.inf
    assert model.decide(silent)[0] == -1  # no output spike: no decision
    features = model.encoder(images)
    assert features.shape == (8, 24)
    assert 0 < features.min()
    assert features.max() <= 1


def test_a_hidden_neuron_silent_on_the_whole_batch_is_raised_towards_threshold():
    torch.manual_seed(0)
    model = SNNTemporal(SMALL, TrainSpec(), (1, 28, 28), 10)
    images = torch.rand(8, 1, 28, 28)
    with torch.no_grad():
        model.encoder.layers[0].weight[:, :5] = -1.0  # five hidden neurons that cannot fire
    times, _ = model.output_times(images)
    dead = ~torch.isfinite(times[1]).any(dim=0)
    assert dead[:5].all()
    assert not dead[5:].all()
    model.dead_drive(times).backward()
    grad = model.encoder.layers[0].weight.grad
    assert (grad[:, :5] <= 0).all()
    assert (grad[:, :5] < 0).any()  # descent raises their weights...
    assert (grad[:, 5:][:, ~dead[5:]] == 0).all()  # ...and leaves the neurons that fire alone
    # The whole objective includes it with the spec's weight; without it, the dead get nothing.
    quiet = SNNTemporal(SMALL.model_copy(update={"revive_cost": 0.0}), TrainSpec(), (1, 28, 28), 10)
    quiet.load_state_dict(model.state_dict())
    quiet.objective(images, torch.arange(8))[0].backward()
    assert (quiet.encoder.layers[0].weight.grad[:, :5] == 0).all()


def test_evaluation_reports_accuracy_time_to_decision_and_counts(tmp_path: Path):
    torch.manual_seed(0)
    model = SNNTemporal(STRONG, TrainSpec(), (1, 28, 28), 10).eval()
    images = (torch.rand(20, 1, 28, 28) * 255).to(torch.uint8)
    labels = torch.arange(20) % 10
    metrics, pictures = evaluate_spiking(model, images, labels, tuple("abcdefghij"), tmp_path)
    with torch.no_grad():
        times, output = model.output_times(images.float() / 255)
    assert metrics["accuracy"] == pytest.approx((model.decide(output) == labels).float().mean().item())
    assert metrics["time_to_decision"] == pytest.approx(output.amin(dim=1).mean().item())
    assert metrics["decided"] == 1.0
    assert metrics["spikes_per_sample/hidden1"] == 24
    assert metrics["firing_rate/output"] == 1.0
    # A neuron integrates the input spikes and pulses before its own spike: two multiply-accumulates
    # per input spike (w e^(t/tau), w t e^(t/tau)), two adds per pulse (those products are constants).
    layers = [model.encoder.layers[0], model.output]
    data = pulses = 0
    for before, after, layer in zip((times[0], times[1]), (times[1], output), layers, strict=True):
        for sample in range(20):
            for neuron in range(after.shape[1]):
                spike = after[sample, neuron].item()
                data += sum(1 for t in before[sample].tolist() if t < spike)
                pulses += sum(1 for t in layer.pulse_times.tolist() if t < spike)
    assert metrics["snn_macs_per_sample"] == pytest.approx(2 * data / 20)
    assert metrics["synaptic_ops_per_sample"] == pytest.approx(2 * pulses / 20)
    assert metrics["crossing_checks_per_sample"] == pytest.approx((data + pulses) / 20)
    assert metrics["lambert_w_per_sample"] == 24 + 10  # every neuron fires
    assert metrics["ann_macs_per_sample"] == 784 * 24 + 24 * 10
    assert {p.name for p in pictures} == {"spike_raster.png", "membrane_trace.png"}
    assert all(p.stat().st_size > 1000 for p in pictures)


def test_an_encoding_it_cannot_take_is_rejected_at_validation():
    with pytest.raises(SpecError) as caught:
        load_text("name: x\nmodel:\n  kind: snn_temporal\n  encoding: {kind: rate}\n", "specs/x.yaml")
    [problem] = caught.value.problems
    assert str(problem).startswith("specs/x.yaml:2:1: model: encoding 'rate'")
    assert "use latency" in str(problem)
    with pytest.raises(SpecError) as caught:
        load_text("name: x\ndata: {dataset: mnist1d}\nmodel: {kind: snn_temporal}\n", "specs/x.yaml")
    assert "sequence" in str(caught.value.problems[0])
