"""The nengo kind: the spec's rules, the white signal, PES lowering a channel's error, what BCM,
Oja and Voja change, the simulator's state surviving a checkpoint, and a killed training resumed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from pydantic import ValidationError

from pipeline.models.nengo import NengoSpec
from pipeline.models.nengo.module import NengoNetwork
from pipeline.models.nengo.network import Simulation, readout_names
from pipeline.models.nengo.signals import SIGNAL_HIGH_HZ, SIGNAL_RMS, generate, read, white_signal
from pipeline.spec.components import TrainSpec
from tests.test_resume import finish, kill_at_epoch, pipeline

ROOT = Path(__file__).resolve().parents[2]


def spec(**settings) -> NengoSpec:
    return NengoSpec(kind="nengo", **settings)


def test_rules_are_checked():
    with pytest.raises(ValidationError, match="must include pes"):
        spec(rules=["bcm"])
    with pytest.raises(ValidationError, match="choose one"):
        spec(rules=["pes", "bcm", "oja"])
    with pytest.raises(ValidationError, match="low < high"):
        spec(intercepts=(0.5, 0.1))
    spec(rules=["pes", "oja", "voja"]).check_input((1, 1000))
    with pytest.raises(ValueError, match="only the channel"):
        spec(rules=["pes", "bcm"]).check_input((1, 28, 28))


def test_a_spec_pairing_bcm_with_images_is_refused_before_any_compute():
    from pipeline.spec.load import SpecError, load_text

    text = {"name": "x", "data": {"dataset": "fashion_mnist"}, "model": {"kind": "nengo", "rules": ["pes", "bcm"]}}
    with pytest.raises(SpecError, match="only the channel"):
        load_text(yaml.safe_dump(text))


def test_white_signal_is_band_limited_and_scaled():
    signal = white_signal(4000, 0.001, 5.0, 0.5, np.random.default_rng(0))
    assert np.sqrt(np.mean(signal ** 2)) == pytest.approx(0.5)
    power = np.abs(np.fft.rfft(signal)) ** 2
    frequencies = np.fft.rfftfreq(4000, 0.001)
    assert power[frequencies > 5.0].max() < 1e-12 * power.max()
    assert power[(frequencies > 0) & (frequencies <= 5.0)].min() > 0


def test_white_signal_dataset_is_contiguous_and_seeded(tmp_path):
    generate(tmp_path)
    first = read(tmp_path)
    x, y = first.train["input"], first.train["target"]
    assert x.shape == (60, 1, 1000) and first.test["input"].shape == (10, 1, 1000)
    assert np.array_equal(x[0, 0, 1:], y[0, 0, :-1])  # the target is the next value
    assert y[0, 0, -1] == x[1, 0, 0]  # the windows are cut from one signal, in order
    assert np.std(x) == pytest.approx(SIGNAL_RMS, rel=0.1)
    again = tmp_path / "again"
    again.mkdir()
    generate(again)
    assert np.array_equal(read(again).test["input"], first.test["input"])
    assert SIGNAL_HIGH_HZ == 5.0


def channel(settings: dict | None = None, seconds: int = 6) -> tuple[NengoNetwork, dict]:
    """A small channel initialised on a few seconds of white signal."""
    network = NengoNetwork(spec(neurons=60, **(settings or {})), TrainSpec(), (1, 1000), 0)
    signal = white_signal(seconds * 1000, 0.001, 5.0, 0.5, np.random.default_rng(1)).astype(np.float32)
    train = {"input": torch.from_numpy(signal.reshape(seconds, 1, 1000))}
    network.initialise(train)
    return network, train


def learn(network: NengoNetwork, train: dict) -> tuple[Simulation, list[dict[str, np.ndarray]]]:
    simulation = Simulation(network.spec, network.encoder.arrays(), learning=True, seed=0)
    outputs = []
    for window in train["input"]:
        x, targets, _ = network.stream({"input": window[None]})
        run = simulation.run(x, targets)
        outputs.append({name: np.sqrt(np.mean((out - targets) ** 2)) for name, out in run.items()})
    return simulation, outputs


def test_pes_lowers_the_error_of_a_channel():
    network, train = channel()
    simulation, errors = learn(network, train)
    pes = [e["spiking_pes"] for e in errors]
    silent = np.sqrt(np.mean(train["input"].numpy() ** 2, axis=(1, 2)))  # each window's, output held at 0
    assert pes[0] > 0.6 * silent[0]  # from zero decoders, learning within the first second
    # the least-squares readout is good from the start (its error mostly the synapses' lag), and
    # within a few seconds PES comes within 10% of it
    assert errors[0]["spiking_least_squares"] < 0.6 * silent[0]
    assert pes[-1] < 0.65 * pes[0] and pes[-1] < 1.1 * errors[-1]["spiking_least_squares"]
    learned = simulation.learned_weights()
    assert learned.shape == (2, 1, 60) and np.abs(learned).sum() > 0


def test_without_learning_nothing_changes():
    network, train = channel()
    simulation = Simulation(network.spec, network.encoder.arrays(), learning=False, seed=0)
    x, _, _ = network.stream({"input": train["input"][:1]})
    outputs = simulation.run(x)
    assert set(outputs) == {*readout_names(), "reference"}
    # zero decoders into the output ensemble, no rule: what comes out is its decoding noise
    assert np.abs(outputs["spiking_pes"]).max() < 0.1 < np.abs(outputs["spiking_least_squares"]).max()
    assert np.array_equal(simulation.learned_weights(), network.encoder.arrays().learned)


@pytest.mark.parametrize("rule", ["bcm", "oja", "voja"])
def test_the_unsupervised_rules_change_what_they_act_on(rule):
    network, train = channel({"rules": ["pes", rule], "bcm_rate": 1e-7, "oja_rate": 1e-4}, seconds=2)
    simulation, _ = learn(network, train)
    if rule == "voja":  # the first ensembles' encoders move; the readout stays decoders
        before = network.encoder.arrays().scaled_encoders
        assert simulation.learned_weights().shape == (2, 1, 60)
        assert not np.allclose(simulation.scaled_encoders(), before)
    else:  # neuron-to-neuron weights, learnt by PES and the rule together
        assert simulation.learned_weights().shape == (2, 60, 60)
        # the same network with the rule's rate negligible: PES alone on the same weights
        negligible = network.spec.model_copy(update={"bcm_rate": 1e-30, "oja_rate": 1e-30})
        weights_pes = Simulation(negligible, network.encoder.arrays(), learning=True, seed=0)
        for window in train["input"]:
            x, targets, _ = network.stream({"input": window[None]})
            weights_pes.run(x, targets)
        assert np.abs(weights_pes.learned_weights()).sum() > 0
        assert not np.allclose(simulation.learned_weights(), weights_pes.learned_weights())


def test_the_channel_is_also_scored_against_the_input_through_its_synapses():
    network, train = channel()
    scores, outputs = network.simulate(train["input"][:2])
    assert outputs["reference"].shape == outputs["spiking_least_squares"].shape == (2000, 1)
    # the synapses' lag is most of the least-squares channel's error
    assert scores["spiking_least_squares_filtered"] < 0.6 * scores["spiking_least_squares"]
    lagged = outputs["reference"][:, 0]
    signal = train["input"][:2].numpy().reshape(-1)
    assert np.corrcoef(lagged[100:], signal[100 - 20:-20])[0, 1] > np.corrcoef(lagged[100:], signal[100:])[0, 1]


def test_the_simulator_state_restores_exactly():
    network, train = channel()
    x, targets, _ = network.stream({"input": train["input"][:2]})
    first = Simulation(network.spec, network.encoder.arrays(), learning=True, seed=3)
    first.run(x[:700], targets[:700])
    state = first.state()
    expected = first.run(x[700:], targets[700:])
    second = Simulation(network.spec, network.encoder.arrays(), learning=True, seed=3)
    second.restore(state)
    assert second.simulator.n_steps == 700
    got = second.run(x[700:], targets[700:])
    for name in readout_names():
        assert np.array_equal(got[name], expected[name]), name
    with pytest.raises(ValueError, match="different network"):
        Simulation(spec(neurons=61), network.encoder.arrays(), learning=True, seed=3).restore(state[:-1])


def test_classifier_decides_on_the_second_half_of_each_presentation():
    output = np.zeros((2 * 4, 3))
    output[:2, 0] = 5.0  # image 0: class 0 early, class 2 late
    output[2:4, 2] = 1.0
    output[4:8, 1] = 1.0
    assert NengoNetwork.decisions(output, 4).tolist() == [2, 1]


def test_classifier_projection_and_readouts():
    torch.manual_seed(0)
    templates = torch.rand(3, 1, 6, 6)
    labels = torch.arange(300) % 3
    images = ((0.7 * templates[labels] + 0.3 * torch.rand(300, 1, 6, 6)) * 255).to(torch.uint8)
    network = NengoNetwork(spec(neurons=80, pca_components=5, encoders="data", present_seconds=0.02),
                           TrainSpec(), (1, 6, 6), 3)
    network.initialise({"input": images, "label": labels})
    projected = network.encoder.project(images.float() / 255)
    assert projected.shape == (300, 5)
    assert (projected.norm(dim=1) <= 1).float().mean() == pytest.approx(0.95, abs=0.01)
    components = network.encoder.pca_components
    assert torch.allclose(components @ components.T, torch.eye(5), atol=1e-4)
    scores, decisions = network.simulate(images[:40].float() / 255, labels[:40])
    assert set(scores) == set(readout_names()) and decisions["spiking_pes"].shape == (40,)
    assert scores["rate_least_squares"] > 0.9 and scores["spiking_least_squares"] > 0.9


QUICK = """\
name: nengo_resume
data: {dataset: white_signal, train_subset: 6, batch_size: 1}
model: {kind: nengo, neurons: 40}
train: {max_epochs: 5, checkpoint_min_interval_s: 0}
downstream: []
"""


def _project(root: Path) -> Path:
    from pipeline import plugins
    from pipeline.data.fetch import fetch_dataset

    (root / "specs").mkdir(parents=True)
    (root / "dvc.yaml").write_text("stages: {}\n")
    fetch_dataset(plugins.datasets()["white_signal"], root=root / "data")
    (root / "specs" / "nengo_resume.yaml").write_text(QUICK)
    return root


@pytest.mark.slow
def test_killed_nengo_training_resumes_to_the_same_network(tmp_path: Path):
    reference = _project(tmp_path / "reference")
    finish(pipeline(reference, "pretrain", "specs/nengo_resume.yaml"))
    killed = _project(tmp_path / "killed")
    process = pipeline(killed, "pretrain", "specs/nengo_resume.yaml")
    kill_at_epoch(process, killed / "artifacts" / "nengo_resume" / "pretrain" / "checkpoints" / "last.ckpt")
    assert "resuming from" in finish(pipeline(killed, "pretrain", "specs/nengo_resume.yaml", "--auto-resume"))
    mine = torch.load(killed / "artifacts/nengo_resume/pretrain/model.pt", weights_only=True)
    theirs = torch.load(reference / "artifacts/nengo_resume/pretrain/model.pt", weights_only=True)
    assert mine.keys() == theirs.keys()
    for key, value in theirs.items():
        assert torch.equal(mine[key], value), key
    assert theirs["encoder.learned"].abs().sum() > 0


def test_features_are_one_row_per_example():
    network, train = channel()
    features = network.encoder(train["input"][:3])
    assert features.shape == (3, 60) and (features >= 0).all() and features.sum() > 0
    images = (torch.rand(5, 1, 6, 6) * 255).to(torch.uint8)
    classifier = NengoNetwork(spec(neurons=30, pca_components=4), TrainSpec(), (1, 6, 6), 3)
    classifier.initialise({"input": images, "label": torch.tensor([0, 1, 2, 0, 1])})
    assert classifier.encoder(images.float() / 255).shape == (5, 30)
