"""The recurrent kinds of the continuous-time family (GRU/LSTM, CT-RNN, LTC, CfC): wiring,
elapsed time, free-running generation, and how their specs meet the data and the tasks."""

from __future__ import annotations

import pytest
import torch

from pipeline.models.continuous import CfCSpec, CTRNNSpec, LTCSpec, RNNSpec
from pipeline.models.continuous.module import CTRNN, LTC, RNN, CfC
from pipeline.spec.experiment import ExperimentSpec, TrainSpec

KINDS = [
    (RNN, RNNSpec(kind="rnn", hidden=12)),
    (RNN, RNNSpec(kind="rnn", cell="lstm", hidden=12, layers=2)),
    (CTRNN, CTRNNSpec(kind="ct_rnn", hidden=12)),
    (LTC, LTCSpec(kind="ltc", units=12, ode_unfolds=2)),
    (CfC, CfCSpec(kind="cfc", units=12, backbone_units=8)),
    (CfC, CfCSpec(kind="cfc", units=16, wiring={"kind": "ncp", "outputs": 4}, mixed_memory=True)),
]


def _connections_computed_through(cell, in_dim: int) -> int:
    """Brute force: for each layer of a wired CfC cell, the (input or own neuron, neuron) pairs
    whose entry of the Jacobian of the layer's new state with respect to [layer input, its state]
    is nonzero at random points; summed over the layers."""
    torch.manual_seed(1)
    used, width = 0, in_dim
    for layer in cell._layers:
        hidden = layer.ff1.out_features
        seen = torch.zeros(hidden, width + hidden, dtype=torch.bool)
        for _ in range(3):
            point = torch.randn(width + hidden)

            def step(x, layer=layer, width=width):
                return layer(x[None, :width], x[None, width:], torch.ones(1, 1))[0][0]

            seen |= torch.autograd.functional.jacobian(step, point) != 0
        used += int(seen.sum())
        width = hidden
    return used


@pytest.mark.parametrize("mode", ["default", "no_gate", "pure"])
@pytest.mark.parametrize(("sparsity", "units"), [(0.5, 19), (0.75, 32)])
def test_an_ncp_counts_the_synapses_it_computes_through(sparsity: float, units: int, mode: str):
    """The count is of the connections through which a neuron's next state depends on an input
    or a neuron, found by the Jacobian; the wiring's diagram (inter-layer masks) is fewer: ncps'
    wired CfC connects the neurons of a layer densely, and its time gates ignore the mask."""
    from ncps.wirings import AutoNCP

    spec = CfCSpec(kind="cfc", units=units, mode=mode, wiring={"kind": "ncp", "outputs": 4, "sparsity": sparsity})
    net = CfC(spec, TrainSpec(), (1, 20), 10)
    used, dense = net.network_stats()["synapses_used"], net.network_stats()["synapses_dense"]
    cell = net.encoder.core.cell
    assert used == _connections_computed_through(cell, 1)
    assert dense == (1 + units) * units
    assert used < dense
    wiring = AutoNCP(units, 4, sparsity_level=sparsity, seed=spec.wiring.seed)
    wiring.build(1)
    diagram = wiring.synapse_count + wiring.sensory_synapse_count
    assert used > diagram
    # The mask is applied to the masked maps: their weights of absent synapses get no gradient.
    x = torch.randn(4, 1, 20)
    net.classify(x).sum().backward()
    masked = [(layer.sparsity_mask == 0, layer.ff1.weight.grad) for layer in cell._layers]
    assert any(absent.any() for absent, _ in masked)
    assert all(torch.all(grad[absent] == 0) for absent, grad in masked)
    # A fully connected network of the same neurons uses all its synapses.
    dense_net = CfC(CfCSpec(kind="cfc", units=units), TrainSpec(), (1, 20), 10)
    assert dense_net.network_stats()["synapses_used"] == dense_net.network_stats()["synapses_dense"] == dense


def test_an_ncp_wired_ltc_computes_through_its_wiring_alone():
    from ncps.wirings import AutoNCP

    spec = LTCSpec(kind="ltc", units=19, ode_unfolds=1, wiring={"kind": "ncp", "outputs": 4, "sparsity": 0.5})
    net = LTC(spec, TrainSpec(), (1, 20), 10)
    wiring = AutoNCP(19, 4, sparsity_level=0.5, seed=spec.wiring.seed)
    wiring.build(1)
    assert net.network_stats()["synapses_used"] == wiring.synapse_count + wiring.sensory_synapse_count
    # One solver step: a neuron's next state depends on the neurons and inputs wired to it, and itself.
    cell = net.encoder.core.cell
    point = torch.randn(20)
    jacobian = torch.autograd.functional.jacobian(
        lambda x: cell(x[None, :1], x[None, 1:], torch.ones(1, 1))[1][0], point)
    wired = torch.cat([torch.as_tensor(abs(wiring.sensory_adjacency_matrix)),
                       torch.as_tensor(abs(wiring.adjacency_matrix))]).T != 0
    itself = torch.zeros(19, 20, dtype=torch.bool)
    itself[:, 1:] = torch.eye(19, dtype=torch.bool)
    assert torch.equal(jacobian != 0, wired | itself)


@pytest.mark.parametrize(("cls", "spec"), KINDS)
def test_every_kind_classifies_forecasts_and_generates_consistently(cls, spec):
    torch.manual_seed(0)
    net = cls(spec, TrainSpec(), (1, 15), 10)
    assert net.classify(torch.randn(3, 1, 15)).shape == (3, 10)
    forecaster = cls(spec, TrainSpec(), (1, 15), 0).eval()
    series = torch.randn(2, 1, 15)
    with torch.no_grad():
        next_values = forecaster.predict_next(series)
        free = forecaster.generate(series, 4)
    assert next_values.shape == (2, 1, 15)
    assert free.shape == (2, 1, 4)
    # Its first free step is the prediction after the true inputs; each later one equals reading the
    # whole sequence, its own predictions included, from the start.
    torch.testing.assert_close(free[:, :, 0], next_values[:, :, -1])
    with torch.no_grad():
        rerun = forecaster.predict_next(torch.cat([series, free[:, :, :3]], dim=2))
    torch.testing.assert_close(free[:, :, 1:], rerun[:, :, -3:], rtol=1e-5, atol=1e-5)
    stats = net.network_stats()
    assert stats["parameters"] == sum(p.numel() for p in net.parameters())
    assert stats["synapses_used"] > 0


def test_continuous_time_kinds_integrate_over_the_elapsed_time_and_the_gru_reads_it():
    torch.manual_seed(0)
    values = torch.randn(4, 1, 10)

    def with_gaps(gap: float) -> torch.Tensor:
        return torch.cat([values, torch.full((4, 1, 10), gap)], dim=1)

    ct = CTRNN(CTRNNSpec(kind="ct_rnn", hidden=8, elapsed_time="last_channel"), TrainSpec(), (2, 10), 3)
    # No time passes: the state never leaves zero, whatever the input.
    with torch.no_grad():
        assert torch.all(ct.encoder(with_gaps(0.0)) == 0)
        assert not torch.allclose(ct.encoder(with_gaps(1.0)), ct.encoder(with_gaps(3.0)))
    # A CT-RNN step of dt is `unfolds` Euler steps: check one step by hand.
    core = ct.encoder.core
    h = torch.zeros(4, 8)
    x = with_gaps(0.5).transpose(1, 2)
    for _ in range(core.unfolds):
        h = h + (0.5 / core.unfolds) * (torch.tanh(core.input(x[:, 0]) + core.recurrent(h)) - h) / core.tau()
    with torch.no_grad():
        torch.testing.assert_close(core(x[:, :1], x[:, :1, -1:])[0][:, 0], h.detach())
    for cls, spec in ((CfC, CfCSpec(kind="cfc", units=8, elapsed_time="last_channel")),
                      (LTC, LTCSpec(kind="ltc", units=8, elapsed_time="last_channel", ode_unfolds=2))):
        net = cls(spec, TrainSpec(), (2, 10), 3)
        with torch.no_grad():
            assert not torch.allclose(net.encoder(with_gaps(1.0)), net.encoder(with_gaps(3.0))), spec.kind
    # Elapsed times that differ between the examples of one batch: each example as if alone.
    cfc = CfC(CfCSpec(kind="cfc", units=8, elapsed_time="last_channel"), TrainSpec(), (2, 10), 3)
    mixed = torch.cat([with_gaps(1.0)[:2], with_gaps(3.0)[2:]])
    with torch.no_grad():
        torch.testing.assert_close(cfc.encoder(mixed)[2:], cfc.encoder(with_gaps(3.0))[2:])
    # Without `last_channel` the samples are one time unit apart and the channel is just an input.
    gru = RNN(RNNSpec(kind="rnn", hidden=8, elapsed_time="last_channel"), TrainSpec(), (2, 10), 3)
    with torch.no_grad():
        assert not torch.allclose(gru.encoder(with_gaps(1.0)), gru.encoder(with_gaps(3.0)))


def _spec(dataset: str, kind: str = "cfc", downstream: list | None = None) -> dict:
    body = {"name": "t", "data": {"dataset": dataset}, "model": {"kind": kind}}
    if downstream is not None:
        body["downstream"] = downstream
    return body


def test_tasks_meet_the_data_they_need():
    # A series gets the forecasting tasks by default, labelled sequences the classifier's.
    series = ExperimentSpec.model_validate(_spec("mackey_glass"))
    assert [t.kind for t in series.downstream] == ["forecast", "network_stats"]
    labelled = ExperimentSpec.model_validate(_spec("mnist1d"))
    assert [t.kind for t in labelled.downstream] == ["linear_probe", "knn", "network", "network_stats", "embedding"]
    with pytest.raises(ValueError, match="'network' needs class labels, which dataset 'mackey_glass' does not"):
        ExperimentSpec.model_validate(_spec("mackey_glass", downstream=[{"kind": "network"}]))
    with pytest.raises(ValueError, match="'forecast' needs a series to forecast"):
        ExperimentSpec.model_validate(_spec("mnist1d", downstream=[{"kind": "forecast"}]))
    with pytest.raises(ValueError, match="kind 'neural_ode' takes sequence data"):
        ExperimentSpec.model_validate(_spec("mackey_glass", kind="neural_ode", downstream=[]))
    with pytest.raises(ValueError, match="elapsed_time: last_channel needs a time channel"):
        ExperimentSpec.model_validate({**_spec("mnist1d"), "model": {"kind": "cfc", "elapsed_time": "last_channel"}})
    with pytest.raises(ValueError, match="needs more than outputs"):
        CfCSpec(kind="cfc", units=8, wiring={"kind": "ncp", "outputs": 6})
