"""Spiking primitives: neuron dynamics against hand-computed values, the fused LIF layer against
the step-by-step reference, surrogate derivatives against their formulas, encoder statistics."""

from __future__ import annotations

import math

import pytest
import torch

from pipeline.models.spiking import EncodingSpec, NeuronSpec, SurrogateSpec
from pipeline.models.spiking.encoding import delta, encode, latency, rate, spike_times
from pipeline.models.spiking.neurons import NeuronCell, NeuronState, lif_layer
from pipeline.models.spiking.surrogates import pseudo_derivative, pseudo_derivative_, spike

FAST = SurrogateSpec(name="fast_sigmoid", slope=25)


def test_lif_against_hand_computed_values():
    neuron = NeuronSpec(tau_mem=10, dt=1, threshold=1.0)
    a = math.exp(-0.1)
    currents = torch.tensor([[3.0], [3.0], [0.0], [12.0]])
    spikes, v = NeuronCell(neuron, FAST).run(currents)
    expected_v, expected_z, vv, z = [], [], 0.0, 0.0
    for current in (3.0, 3.0, 0.0, 12.0):  # v <- a v + (1 - a) I - z v_th, z = H(v - v_th)
        vv = a * vv + (1 - a) * current - z * 1.0
        z = float(vv >= 1.0)
        expected_v.append(vv)
        expected_z.append(z)
    assert torch.allclose(v.flatten(), torch.tensor(expected_v))
    assert spikes.flatten().tolist() == expected_z == [0.0, 0.0, 0.0, 1.0]
    # by hand: v1 = 0.2855, v2 = 0.5438, v3 = 0.4921, v4 = 1.5873 -> spike
    assert v.flatten().tolist() == pytest.approx([0.28549, 0.54381, 0.49206, 1.58724], abs=1e-4)


def test_reset_by_subtraction_and_the_refractory_period():
    neuron = NeuronSpec(tau_mem=1e9, threshold=1.0, refractory=2)  # alpha ~ 1: a pure integrator
    currents = torch.full((7, 1), 1.5) / (1 - neuron.alpha)  # adds 1.5 a step
    spikes, v = NeuronCell(neuron, FAST).run(currents)
    # t0: 1.5 spikes; t1: 1.5 + 1.5 - 1 (reset) = 2.0 and t2: 3.5 are refractory; t3: 5.0 spikes ...
    assert spikes.flatten().tolist() == [1, 0, 0, 1, 0, 0, 1]
    assert v.flatten().tolist() == pytest.approx([1.5, 2.0, 3.5, 5.0, 5.5, 7.0, 8.5], abs=1e-3)


def test_alif_adapts_its_threshold_by_hand_computed_values():
    neuron = NeuronSpec(kind="alif", tau_mem=10, tau_adapt=50, beta=3.0, threshold=1.0)
    cell = NeuronCell(neuron, FAST)
    state = NeuronState.rest((1,), torch.zeros(1))
    a, rho = math.exp(-1 / 10), math.exp(-1 / 50)
    v = z = b = 0.0
    for _ in range(100):
        spikes, state = cell.step(torch.tensor([2.0]), state)
        v = a * v + (1 - a) * 2.0 - z * 1.0           # reset by v_th
        z = float(v >= 1.0 + 3.0 * b)                  # A = v_th + beta b
        b = rho * b + (1 - rho) * z
        assert spikes.item() == z
        assert state.v.item() == pytest.approx(v, abs=1e-4)
        assert state.b.item() == pytest.approx(b, abs=1e-5)
    lif = NeuronCell(neuron.model_copy(update={"kind": "lif"}), FAST).run(torch.full((100, 1), 2.0))[0]
    alif = NeuronCell(neuron, FAST).run(torch.full((100, 1), 2.0))[0]
    assert 0 < alif.sum() < lif.sum()  # the same drive, fewer spikes once adapted


@pytest.mark.parametrize("refractory", [0, 3])
@pytest.mark.parametrize("surrogate", ["fast_sigmoid", "atan", "triangle"])
def test_the_fused_layer_equals_the_step_by_step_reference(refractory, surrogate):
    torch.manual_seed(0)
    neuron = NeuronSpec(tau_mem=5, refractory=refractory)
    spec = SurrogateSpec(name=surrogate, slope=0.3 if surrogate == "triangle" else 5)
    currents = (3 * torch.randn(30, 4, 8)).requires_grad_()
    weights = torch.randn(30, 4, 8)
    fused, fused_v = lif_layer(currents, neuron, spec)
    reference, reference_v = NeuronCell(neuron, spec).run(currents)
    assert torch.equal(fused, reference)
    assert torch.allclose(fused_v, reference_v, atol=1e-5)
    assert fused.sum() > 0
    (grad_fused,) = torch.autograd.grad((fused * weights).sum() + fused_v.sum(), currents)
    (grad_reference,) = torch.autograd.grad((reference * weights).sum() + reference_v.sum(), currents)
    assert torch.allclose(grad_fused, grad_reference, atol=1e-5)


@pytest.mark.parametrize(("name", "slope", "formula"), [
    ("fast_sigmoid", 25.0, lambda x, k: 1 / (k * abs(x) + 1) ** 2),
    ("atan", 2.0, lambda x, k: (k / 2) / (1 + (math.pi / 2 * k * x) ** 2)),
    ("triangle", 0.3, lambda x, k: k * max(0.0, 1 - abs(x))),
])
def test_surrogate_derivatives_match_their_formulas(name, slope, formula):
    spec = SurrogateSpec(name=name, slope=slope)
    x = torch.tensor([-1.5, -0.4, -0.01, 0.0, 0.2, 0.9, 2.0], requires_grad=True)
    out = spike(x, spec)
    assert out.tolist() == [0, 0, 0, 1, 1, 1, 1]  # Heaviside forward
    (grad,) = torch.autograd.grad(out.sum(), x)
    expected = torch.tensor([formula(v, slope) for v in x.tolist()])
    assert torch.allclose(grad, expected, atol=1e-6)
    assert torch.allclose(pseudo_derivative(x.detach(), spec), expected, atol=1e-6)
    assert torch.allclose(pseudo_derivative_(x.detach().clone(), spec), expected, atol=1e-6)  # in place


def test_rate_encoding_fires_with_the_input_probability():
    spec = EncodingSpec(kind="rate", steps=2000)
    x = torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0])
    spikes = rate(x, spec, torch.Generator().manual_seed(0))
    assert spikes.shape == (2000, 5)
    assert torch.allclose(spikes.mean(dim=0), x, atol=0.03)
    assert spikes[:, 0].sum() == 0
    assert spikes[:, -1].sum() == 2000


@pytest.mark.parametrize("mode", ["linear", "log"])
def test_latency_encoding_fires_once_and_stronger_inputs_earlier(mode):
    spec = EncodingSpec(kind="latency", steps=20, latency=mode, threshold=0.05)
    x = torch.tensor([1.0, 0.8, 0.5, 0.2, 0.06, 0.01])
    spikes = latency(x, spec)
    assert spikes.shape == (20, 6)
    assert spikes[:, :5].sum(dim=0).tolist() == [1, 1, 1, 1, 1]
    assert spikes[:, 5].sum() == 0  # below threshold
    times = spike_times(x, spec)[:5].tolist()
    assert times[0] == 0
    assert times == sorted(times)
    assert times[-1] > times[0]
    if mode == "linear":
        assert times == [0, round(0.2 * 19), round(0.5 * 19), round(0.8 * 19), round(0.94 * 19)]


def test_delta_encoding_marks_increases_and_decreases_in_their_own_channels():
    spec = EncodingSpec(kind="delta", threshold=0.5)
    signal = torch.tensor([[[0.0, 1.0, 1.2, 0.0, 0.1]]])  # [B=1, C=1, L=5]
    spikes = delta(signal, spec)
    assert spikes.shape == (5, 1, 2)
    assert spikes[:, 0, 0].tolist() == [0, 1, 0, 0, 0]  # on: +1.0 at step 1
    assert spikes[:, 0, 1].tolist() == [0, 0, 0, 1, 0]  # off: -1.2 at step 3
    image = torch.zeros(2, 1, 4, 3)
    image[:, :, 2:] = 1.0
    assert encode(image, spec).shape == (4, 2, 6)  # 4 rows as time, 3 columns x on/off
