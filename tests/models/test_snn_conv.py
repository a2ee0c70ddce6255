"""The convolutional SNN: validation of its encoding, real training steps, and what its
evaluation measures (accuracy, spikes, synaptic operations against MACs, energy, pictures)."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from pipeline import plugins
from pipeline.data.datamodule import Splits, TensorDataModule
from pipeline.models.spiking import SNNConvSpec
from pipeline.models.spiking.conv import SNNConv
from pipeline.models.spiking.spike_stats import evaluate_spiking
from pipeline.models.spiking.stats import ENERGY_AC_PJ, ENERGY_MAC_PJ, ENERGY_MULT_PJ, LayerCount, summarise
from pipeline.spec.experiment import DataSpec, TrainSpec
from pipeline.spec.load import SpecError, load_text

SMALL = SNNConvSpec(kind="snn_conv", channels=[4, 8], hidden=16, encoding={"kind": "rate", "steps": 4})


def test_the_registry_builds_it():
    assert plugins.models()["snn_conv"].load_class() is SNNConv


def test_an_encoding_the_network_cannot_take_is_rejected_at_validation():
    with pytest.raises(SpecError) as caught:
        load_text("name: x\nmodel:\n  kind: snn_conv\n  encoding: {kind: delta}\n", "specs/x.yaml")
    [problem] = caught.value.problems
    assert str(problem).startswith("specs/x.yaml:2:1: model: encoding 'delta' turns an image into rows over time")
    assert "use rate or latency" in str(problem)
    assert load_text("name: x\nmodel: {kind: snn_conv, encoding: {kind: latency}}\n").model.encoding.kind == "latency"


def _bright_splits() -> Splits:
    """Random images bright enough for the untrained network to spike all the way to the readout."""
    generator = torch.Generator().manual_seed(0)

    def make(n: int):
        return torch.randint(0, 256, (n, 1, 28, 28), generator=generator, dtype=torch.uint8), torch.arange(n) % 10

    return Splits.of_pairs(train=make(64), val=make(32), test=make(32), classes=tuple(str(i) for i in range(10)))


def test_a_real_training_step_and_fast_dev_run():
    pl.seed_everything(0, verbose=False)
    model = SNNConv(SMALL, TrainSpec(max_epochs=1), (1, 28, 28), 10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data = TensorDataModule(DataSpec(batch_size=16), seed=0, splits=_bright_splits())
    options = dict(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                   enable_model_summary=False)
    pl.Trainer(max_steps=1, num_sanity_val_steps=0, limit_val_batches=0, **options).fit(model, datamodule=data)
    changed = {k for k, v in model.state_dict().items() if not torch.equal(before[k], v)}
    assert {"encoder.convs.0.weight", "encoder.fc.weight", "readout.weight"} <= changed
    pl.Trainer(fast_dev_run=2, **options).fit(SNNConv(SMALL, TrainSpec(max_epochs=1), (1, 28, 28), 10),
                                              datamodule=data)


def test_it_starts_spiking_and_its_features_are_firing_rates():
    torch.manual_seed(0)
    model = SNNConv(SMALL, TrainSpec(), (1, 28, 28), 10)
    images = torch.rand(8, 1, 28, 28)
    _, record = model.encoder.run(images)
    assert record["conv1"].shape == (4, 8, 4, 28, 28)
    assert record["conv1"].mean() > 0.01  # the initial weights make the first layer fire
    features = model.encoder(images)
    assert features.shape == (8, 16)
    assert 0 <= features.min()
    assert features.max() <= 1


def test_evaluation_counts_spikes_operations_and_energy(tmp_path: Path):
    torch.manual_seed(0)
    model = SNNConv(SMALL, TrainSpec(), (1, 28, 28), 10).eval()
    images = (torch.rand(20, 1, 28, 28) * 255).to(torch.uint8)
    labels = torch.arange(20) % 10
    torch.manual_seed(1)  # rate coding draws its spikes: the same draws for both passes
    metrics, pictures = evaluate_spiking(model, images, labels, tuple("abcdefghij"), tmp_path)
    torch.manual_seed(1)
    with torch.no_grad():
        expected = (model.classify(images.float() / 255).argmax(1) == labels).float().mean().item()
    assert metrics["accuracy"] == pytest.approx(expected)
    assert 0 < metrics["sparsity"] < 1
    layers = ("conv1", "conv2", "fc")
    assert metrics["spikes_per_sample"] == pytest.approx(sum(metrics[f"spikes_per_sample/{n}"] for n in layers))
    assert metrics["firing_rate/conv1"] == pytest.approx(metrics["spikes_per_sample/conv1"] / (4 * 28 * 28 * 4))
    # The same-shaped ANN: 28x28x4x1x9 + 14x14x8x4x9 + (8x7x7)x16 + 16x10 multiply-accumulates.
    assert metrics["ann_macs_per_sample"] == 28 * 28 * 4 * 9 + 14 * 14 * 8 * 4 * 9 + 8 * 7 * 7 * 16 + 16 * 10
    # ... and per neuron a bias add and a ReLU compare (the readout: the bias add).
    assert metrics["ann_neuron_ops_per_sample"] == 2 * (28 * 28 * 4 + 14 * 14 * 8 + 16) + 10
    assert metrics["energy_ann_nj"] == pytest.approx(
        (metrics["ann_macs_per_sample"] * ENERGY_MAC_PJ + metrics["ann_neuron_ops_per_sample"] * ENERGY_AC_PJ) / 1000)
    # Every LIF neuron: a multiply and 2 adds a step, an add per spike; the readout: a multiply and
    # 2 adds per output and step.
    neuron_steps = 4 * (4 * 28 * 28 + 8 * 14 * 14 + 16)
    spikes = metrics["spikes_per_sample"]
    assert metrics["neuron_update_mults_per_sample"] == pytest.approx(neuron_steps + 4 * 10)
    assert metrics["neuron_update_adds_per_sample"] == pytest.approx(2 * neuron_steps + spikes + 2 * 4 * 10)
    assert metrics["energy_snn_synaptic_nj"] == pytest.approx(metrics["synaptic_ops_per_sample"] * ENERGY_AC_PJ / 1000)
    neuron_pj = (neuron_steps + 40) * ENERGY_MULT_PJ + (2 * neuron_steps + spikes + 80) * ENERGY_AC_PJ
    assert metrics["energy_snn_neuron_nj"] == pytest.approx(neuron_pj / 1000)
    assert metrics["energy_snn_nj"] == pytest.approx(metrics["energy_snn_synaptic_nj"] + neuron_pj / 1000)
    assert {p.name for p in pictures} == {"spike_raster.png", "membrane_trace.png"}
    assert all(p.stat().st_size > 1000 for p in pictures)


def test_synaptic_operations_by_hand():
    # 3 spikes into a layer whose inputs each drive 5 synapses; 2 spikes into a 4-wide readout.
    counts = [LayerCount("hidden", 10, 2.0, 3 * 5, 100), LayerCount("readout", 0, 0.0, 2 * 4, 40)]
    out = summarise(counts, steps=4)
    assert out["synaptic_ops_per_sample"] == 23
    assert out["ann_macs_per_sample"] == 140
    assert out["firing_rate/hidden"] == 2 / (10 * 4)
    assert out["sparsity"] == 1 - 2 / 40
    assert out["energy_ratio_ann_over_snn"] == pytest.approx(140 * 4.6 / (23 * 0.9))


def test_per_sample_counts_over_several_batches_weigh_every_image_once(tmp_path: Path):
    """10 batches' worth is not needed: 300 images make one full and one partial batch of 256."""
    torch.manual_seed(0)
    spec = SMALL.model_copy(update={"encoding": SMALL.encoding.model_copy(update={"kind": "latency"})})
    model = SNNConv(spec, TrainSpec(), (1, 28, 28), 10).eval()  # latency coding: deterministic
    images = (torch.rand(300, 1, 28, 28) * 255).to(torch.uint8)
    metrics, _ = evaluate_spiking(model, images, torch.arange(300) % 10, tuple("abcdefghij"), tmp_path)
    with torch.no_grad():
        _, record = model.encoder.run(images.float() / 255)
    assert metrics["spikes_per_sample/fc"] == pytest.approx(record["fc"].sum().item() / 300)
    assert metrics["spikes_per_sample/conv1"] == pytest.approx(record["conv1"].sum().item() / 300)


def test_direct_input_is_one_analog_pass_counted_as_macs(tmp_path: Path):
    """Direct encoding: the first layer gets the image itself as a constant current at every step;
    its synapses multiply-accumulate once per image and are costed as MACs, not accumulates."""
    torch.manual_seed(0)
    spec = SMALL.model_copy(update={"encoding": SMALL.encoding.model_copy(update={"kind": "direct"})})
    model = SNNConv(spec, TrainSpec(), (1, 28, 28), 10).eval()
    images = (torch.rand(20, 1, 28, 28) * 255).to(torch.uint8)
    with torch.no_grad():
        _, record = model.encoder.run(images.float() / 255)
        first = model.encoder.convs[0](images.float() / 255)
    assert record["conv1"].shape == (4, 20, 4, 28, 28)
    # Constant current: the membrane after step 1 is (1 - alpha) times it.
    expected = (first * (1 - spec.neuron.alpha) >= spec.neuron.threshold).float()
    assert torch.equal(record["conv1"][0], expected)
    metrics, pictures = evaluate_spiking(model, images, torch.arange(20) % 10, tuple("abcdefghij"), tmp_path)
    conv1_macs = 28 * 28 * 4 * 9
    assert metrics["snn_macs_per_sample"] == conv1_macs
    sops_after_conv1 = metrics["synaptic_ops_per_sample"]
    energy = (sops_after_conv1 * ENERGY_AC_PJ + conv1_macs * ENERGY_MAC_PJ) / 1000
    assert metrics["energy_snn_synaptic_nj"] == pytest.approx(energy)
    assert {p.name for p in pictures} == {"spike_raster.png", "membrane_trace.png"}
