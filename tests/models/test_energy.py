"""The energy estimate of the spiking families against hand counts: synaptic operations, neuron
updates (leak, input, threshold, reset; ALIF's adaptation; the leaky readout), the temporal
network's closed form (multiply-accumulates, exponentials, the crossing search, Lambert W), the
same-shaped ANN, and the ratio."""

from __future__ import annotations

import math

import pytest
import torch

from pipeline.models.spiking import LSNNSpec, SNNConvSpec, stats
from pipeline.models.spiking.conv import SNNConv
from pipeline.models.spiking.lsnn import LSNN
from pipeline.models.spiking.temporal import (
    HALLEY_ITERATIONS,
    LAMBERT_W_ADDS,
    LAMBERT_W_EXPS,
    LAMBERT_W_MULTS,
    _lambert_w0,
    closed_form_count,
)
from pipeline.spec.experiment import TrainSpec

AC, MULT, MAC = 0.9, 3.7, 4.6  # pJ, Horowitz 2014


def test_the_prices_are_horowitz_2014():
    assert (stats.ENERGY_AC_PJ, stats.ENERGY_MULT_PJ) == (AC, MULT)
    assert stats.ENERGY_MAC_PJ == pytest.approx(MAC)
    assert (stats.EXP_MULTS, stats.EXP_ADDS) == (7, 8)


def test_lif_and_alif_update_rules():
    # 3 neurons x 4 steps, 5 spikes: per neuron-step a multiply (leak), an add (input) and a compare
    # (threshold); per spike a subtraction (reset).
    assert stats.neuron_updates(12, 5) == (12, 2 * 12 + 5)
    # ALIF: the adaptation's decay (a multiply) and the threshold's add per step, an add per spike.
    assert stats.neuron_updates(12, 5, adaptive=True) == (12 + 12, 2 * 12 + 5 + 12 + 5)
    # Refractory: the counter's test and decrement per step.
    assert stats.neuron_updates(12, 5, refractory=True) == (12, 2 * 12 + 5 + 2 * 12)
    # A leaky readout: 2 outputs x 4 steps, averaged over the last 3.
    assert stats.readout_updates(8, 6) == (8, 8 + 6)


def _one_channel_network() -> SNNConv:
    """A 2x2 image -> one 3x3 conv channel -> LIF -> pool to 1x1 -> one LIF -> 2 outputs, over 3
    steps of direct input. No leak to speak of (tau_mem 0.01: alpha ~ 0) and a current of 1.5
    thresholds: v = 1.5, 1.5 - 1 = 0.5, 1.5: both LIF layers fire at steps 1 and 3."""
    spec = SNNConvSpec(kind="snn_conv", channels=[1], hidden=1, encoding={"kind": "direct", "steps": 3},
                       neuron={"tau_mem": 0.01, "threshold": 1.0})
    model = SNNConv(spec, TrainSpec(), (1, 2, 2), 2).eval()
    scale = 1 / (1 - spec.neuron.alpha)
    with torch.no_grad():
        conv, fc = model.encoder.convs[0], model.encoder.fc
        conv.weight.zero_()
        conv.bias.fill_(1.5 * scale)
        fc.weight.fill_(1.5 * scale)
        fc.bias.zero_()
    return model


def test_a_one_channel_lif_network_by_hand():
    model = _one_channel_network()
    out = model.spike_batch(torch.rand(1, 1, 2, 2))
    conv1, fc, readout = out.counts
    assert conv1.spikes == 4 * 2  # 4 positions x steps 1 and 3; the fc neuron likewise
    assert fc.spikes == 2
    # conv1, direct input: 2x2x1x1x9 MACs once; 4 neurons x 3 steps of updates, 8 resets.
    assert (conv1.synaptic_ops, conv1.analog_macs, conv1.macs) == (0, 36, 36)
    assert (conv1.neuron_mults, conv1.neuron_adds, conv1.ann_neuron_ops) == (12, 2 * 12 + 8, 2 * 4)
    # fc: 2 pooled spikes x 1 synapse; 1 neuron x 3 steps, 2 resets.
    assert (fc.synaptic_ops, fc.macs, fc.neuron_mults, fc.neuron_adds, fc.ann_neuron_ops) == (2, 1, 3, 2 * 3 + 2, 2)
    # readout: 2 spikes x 2 outputs; 2 outputs x 3 steps, leak, input, and the average over time.
    assert (readout.synaptic_ops, readout.macs, readout.neuron_mults, readout.neuron_adds,
            readout.ann_neuron_ops) == (4, 2, 6, 6 + 6, 2)
    metrics = stats.summarise(stats.per_sample(out.counts, 1), out.steps)
    assert metrics["neuron_update_ops_per_sample"] == (12 + 32) + (3 + 8) + (6 + 12)
    snn = 6 * AC + 36 * MAC + 21 * MULT + 52 * AC  # 295.5 pJ
    ann = 39 * MAC + 12 * AC  # 190.2 pJ
    assert metrics["energy_snn_synaptic_nj"] == pytest.approx((6 * AC + 36 * MAC) / 1000)
    assert metrics["energy_snn_neuron_nj"] == pytest.approx((21 * MULT + 52 * AC) / 1000)
    assert metrics["energy_snn_nj"] == pytest.approx(0.2955)
    assert metrics["energy_ann_nj"] == pytest.approx(0.1902)
    assert metrics["energy_ratio_ann_over_snn"] == pytest.approx(ann / snn) == pytest.approx(0.64365, abs=1e-4)
    assert metrics["energy_ratio_synaptic_only"] == pytest.approx(39 * MAC / (6 * AC + 36 * MAC))


def _lsnn_counts(adaptive_fraction: float) -> list[stats.LayerCount]:
    """3 recurrent neurons over 4 steps, fed 2 delta input spikes; known spikes (5: 3 of them from
    the last neuron, ALIF when adaptive_fraction is 1/3)."""
    spec = LSNNSpec(kind="lsnn", hidden=3, adaptive_fraction=adaptive_fraction, input="delta")
    model = LSNN(spec, TrainSpec(), (1, 4), 2)
    spikes = torch.zeros(4, 1, 3)
    spikes[0, 0, 0] = spikes[1, 0, 2] = spikes[2, 0, 2] = spikes[3, 0, 1] = spikes[3, 0, 2] = 1
    inputs = torch.zeros(4, 1, 2)
    inputs[0, 0, 0] = inputs[2, 0, 1] = 1
    return model.layer_counts(spikes, inputs)


def test_a_lif_population_by_hand():
    lif, readout = _lsnn_counts(0.0)
    # Synapses: each of the 5 spikes reaches the 2 other neurons, each of the 2 input spikes all 3.
    assert (lif.neurons, lif.spikes, lif.synaptic_ops, lif.analog_macs) == (3, 5, 5 * 2 + 2 * 3, 0)
    # 3 neurons x 4 steps: a multiply and 2 adds each, plus the 5 resets.
    assert (lif.neuron_mults, lif.neuron_adds) == (12, 2 * 12 + 5)
    # The same-shaped RNN: (2 inputs + 3 recurrent) x 3 MACs, a bias add and a ReLU per neuron, per step.
    assert (lif.macs, lif.ann_neuron_ops) == (4 * 5 * 3, 4 * 3 * 2)
    # Readout: 5 spikes x 2 outputs; 2 outputs x 4 steps, leak and input, averaged over all 4.
    assert (readout.synaptic_ops, readout.neuron_mults, readout.neuron_adds) == (10, 8, 8 + 8)
    assert (readout.macs, readout.ann_neuron_ops) == (4 * 3 * 2, 4 * 2)
    metrics = stats.summarise([lif, readout], 4)
    assert metrics["neuron_update_ops_per_sample"] == 12 + 29 + 8 + 16
    snn = 26 * AC + (12 + 8) * MULT + (29 + 16) * AC
    ann = (60 + 24) * MAC + (24 + 8) * AC
    assert metrics["energy_ratio_ann_over_snn"] == pytest.approx(ann / snn)


def test_alif_adds_its_adaptation():
    lif, alif, readout = _lsnn_counts(1 / 3)
    assert (lif.neurons, alif.neurons, lif.spikes, alif.spikes) == (2, 1, 2, 3)
    assert (lif.neuron_mults, lif.neuron_adds) == (8, 2 * 8 + 2)
    # ALIF over 4 steps: the LIF part (4 multiplies, 8 adds, 3 resets), then per step the
    # adaptation's decay and the threshold's add, and an add per spike.
    assert (alif.neuron_mults, alif.neuron_adds) == (4 + 4, 8 + 3 + 4 + 3)
    [only_lif, _] = _lsnn_counts(0.0)
    extra_mults = lif.neuron_mults + alif.neuron_mults - only_lif.neuron_mults
    extra_adds = lif.neuron_adds + alif.neuron_adds - only_lif.neuron_adds
    assert (extra_mults, extra_adds) == (4, 4 + 3)


def test_lambert_w_costs_what_its_implementation_runs(monkeypatch):
    assert HALLEY_ITERATIONS == 8
    # start 7 multiplies and 7 adds; per iteration 6 multiplies, 7 adds and an exponential; 2 clamps.
    assert (LAMBERT_W_MULTS, LAMBERT_W_ADDS, LAMBERT_W_EXPS) == (55, 65, 8)
    calls = []
    exp = torch.exp
    monkeypatch.setattr(torch, "exp", lambda x: calls.append(1) or exp(x))
    _lambert_w0(torch.tensor([-0.3, -0.01]))
    assert len(calls) == LAMBERT_W_EXPS  # one exponential per iteration, all of them run


def test_the_temporal_closed_form_by_hand():
    # Inputs at 0 and 1 (the third never spikes), one pulse at 0.5; neuron 0 fires at 0.7, neuron 1 never.
    inputs = torch.tensor([[0.0, 1.0, math.inf]])
    pulses = torch.tensor([0.5])
    outputs = torch.tensor([[0.7, math.inf]])
    count, (exps, lambert_ws, checks) = closed_form_count("hidden1", inputs, pulses, outputs)
    # Neuron 0 integrates the input at 0 and the pulse (before 0.7); neuron 1 both inputs and the pulse.
    data, pulse_pairs = 1 + 2, 1 + 1
    assert count.analog_macs == 2 * data == 6  # w e^(t/tau) and w t e^(t/tau) per input spike and neuron
    assert count.synaptic_ops == 2 * pulse_pairs == 4  # the pulses' products are constants: two adds
    assert count.macs == 3 * 2
    assert count.ann_neuron_ops == 2 * 2
    assert count.spikes == 1
    assert checks == data + pulse_pairs == 5
    # Exponentials: one per input spike (2), one per neuron for its peak test (2), 8 in the one Lambert W.
    assert (exps, lambert_ws) == (2 + 2 + 8, 1)
    assert count.neuron_mults == (3 * 2 + 2 * 5 + 4 * 2 + (55 + 1) + 12 * 7) == 164
    assert count.neuron_adds == (2 + 4 * 5 + 2 + (65 + 1) + 12 * 8) == 186
    readout, _ = closed_form_count("output", inputs, pulses, outputs, readout=True)
    assert readout.ann_neuron_ops == 2  # an output: the bias add, no activation
    metrics = stats.summarise([count], steps=1)
    snn = 4 * AC + 6 * MAC + 164 * MULT + 186 * AC
    ann = 6 * MAC + 4 * AC
    assert metrics["energy_snn_nj"] == pytest.approx(snn / 1000)
    assert metrics["energy_ratio_ann_over_snn"] == pytest.approx(ann / snn)
