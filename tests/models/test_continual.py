"""Continual learners: the scenarios, the accuracy matrix's figures, and each strategy's mechanism
on tiny problems (the latent-replay strategies are in test_continual_latent.py)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from pipeline.data.datamodule import Splits
from pipeline.models.continual import ContinualSpec, ScenarioSpec
from pipeline.models.continual import metrics as cl_metrics
from pipeline.models.continual import scenario as cl_scenario
from pipeline.models.continual.module import Continual
from pipeline.models.continual.strategies import Strategy
from pipeline.spec.experiment import DataSpec, TrainSpec


def splits(n_train: int = 200, n_test: int = 100, classes: int = 10, seed: int = 0) -> Splits:
    """Images whose class is a bright square at its own place, in uint8 like Fashion-MNIST."""
    generator = torch.Generator().manual_seed(seed)

    def make(n: int):
        labels = torch.arange(n) % classes
        images = (torch.rand(n, 1, 8, 8, generator=generator) * 40).to(torch.uint8)
        for i, label in enumerate(labels.tolist()):
            row, col = divmod(label, 4)
            images[i, 0, 2 * row: 2 * row + 2, 2 * col: 2 * col + 2] = 250
        return images, labels

    return Splits.of_pairs(make(n_train), make(n_test // 2), make(n_test), tuple(str(c) for c in range(classes)))


def network(strategy: dict | None = None, scenario: dict | None = None, **model) -> Continual:
    spec = ContinualSpec(kind="continual", strategy=strategy or {"name": "naive"}, scenario=scenario or {},
                         hidden=model.pop("hidden", [32]), **model)
    torch.manual_seed(0)
    train = TrainSpec(optimizer={"name": "adam", "lr": 0.01, "weight_decay": 0}, scheduler={"name": "none"})
    return Continual(spec, train, (1, 8, 8), 10)


def run_stream(net: Continual, data: Splits, epochs: int = 2, seed: int = 0) -> list[dict]:
    """The training stage's protocol without its files: one fit per phase, then after_phase."""
    experiment = SimpleNamespace(seed=seed, data=DataSpec(batch_size=16), train=SimpleNamespace(max_epochs=epochs))
    measured = []
    for index, phase in enumerate(net.phases(experiment, data)):
        pl.seed_everything(seed + index, verbose=False)
        trainer = pl.Trainer(max_epochs=phase.max_epochs, logger=False, enable_checkpointing=False,
                             enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
        trainer.fit(net, datamodule=phase.data)
        measured.append(net.after_phase(index, phase))
    return measured


# --- scenarios ---


def test_class_order_is_seeded_and_the_experiences_split_the_classes():
    data = splits()
    first = cl_scenario.build(ScenarioSpec(experiences=5), data, seed=3)
    again = cl_scenario.build(ScenarioSpec(experiences=5), data, seed=3)
    other = cl_scenario.build(ScenarioSpec(experiences=5), data, seed=4)
    assert [e.classes for e in first] == [e.classes for e in again]
    assert [e.classes for e in first] != [e.classes for e in other]
    assert sorted(c for e in first for c in e.classes) == list(range(10))
    for experience in first:
        assert len(experience.classes) == 2
        for split in ("train", "val", "test"):
            fields = experience.split(split)
            # No label of another experience leaks in, and none of its own is missing.
            assert set(fields["label"].tolist()) == set(experience.classes)
            assert (fields["task"] == experience.index).all()
    assert sum(len(e.train["label"]) for e in first) == len(data.train["label"])


def test_a_given_class_order_is_kept_and_a_wrong_one_refused():
    data = splits()
    order = [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]
    built = cl_scenario.build(ScenarioSpec(experiences=5, class_order=order), data, seed=0)
    assert [c for e in built for c in e.classes] == order
    with pytest.raises(ValueError, match="each of the 10 classes"):
        cl_scenario.build(ScenarioSpec(experiences=5, class_order=[0, 1, 2]), data, seed=0)
    with pytest.raises(ValueError, match="split evenly"):
        cl_scenario.build(ScenarioSpec(experiences=3), data, seed=0)


def test_permuted_experiences_hold_every_class_under_a_fixed_permutation_each():
    data = splits()
    built = cl_scenario.build(ScenarioSpec(type="domain_incremental", experiences=3), data, seed=1)
    again = cl_scenario.build(ScenarioSpec(type="domain_incremental", experiences=3), data, seed=1)
    original = data.train["input"].reshape(len(data.train["input"]), -1)
    orders = []
    for experience, twin in zip(built, again, strict=True):
        assert experience.classes == tuple(range(10))
        assert torch.equal(experience.train["input"], twin.train["input"])  # fixed per seed
        flat = experience.train["input"].reshape(len(original), -1)
        # The same pixels, moved: one permutation for every image of the experience.
        order = cl_scenario.permutations(3, 64, 1)[experience.index]
        assert torch.equal(flat, original[:, order])
        assert torch.equal(experience.train["label"], data.train["label"])
        orders.append(order)
    assert not torch.equal(orders[0], orders[1]) and not torch.equal(orders[0], torch.arange(64))
    kept = cl_scenario.build(ScenarioSpec(type="domain_incremental", experiences=2, permute_first=False), data, 1)
    assert torch.equal(kept[0].train["input"], data.train["input"])


# --- the accuracy matrix's figures ---


def test_figures_of_a_hand_made_matrix():
    matrix = np.array([[0.9, 0.1, 0.0],
                       [0.6, 0.8, 0.2],
                       [0.5, 0.7, 0.9]])
    initial = np.array([0.1, 0.1, 0.1])
    found = cl_metrics.summary(matrix, initial)
    assert found["average_accuracy"] == pytest.approx((0.5 + 0.7 + 0.9) / 3)
    # Forgetting: best earlier minus final, for experiences 0 and 1: (0.9-0.5, 0.8-0.7).
    assert found["forgetting"] == pytest.approx((0.4 + 0.1) / 2)
    assert found["backward_transfer"] == pytest.approx(((0.5 - 0.9) + (0.7 - 0.8)) / 2)
    # Forward transfer: R[j-1, j] - b_j for j = 1, 2: (0.1-0.1, 0.2-0.1).
    assert found["forward_transfer"] == pytest.approx((0.0 + 0.1) / 2)
    assert cl_metrics.average_accuracies(matrix) == pytest.approx([0.9, 0.7, 0.7])


def test_a_single_fit_has_an_average_and_no_forgetting_figures():
    found = cl_metrics.summary(np.array([[0.8, 0.9, 0.7]]))
    assert found["average_accuracy"] == pytest.approx(0.8)
    assert math.isnan(found["forgetting"]) and math.isnan(found["backward_transfer"])


# --- the protocol ---


def test_the_protocol_fills_one_row_per_experience_and_keeps_it_with_the_weights():
    net = network()
    measured = run_stream(net, splits(), epochs=1)
    matrix = net.matrix()
    assert matrix.shape == (5, 5) and np.isfinite(matrix).all()
    assert "continual/accuracy_experience_4" in measured[-1] and "continual/memory_bytes" in measured[-1]
    fresh = network()
    fresh.load_state_dict(net.state_dict())
    assert np.array_equal(fresh.matrix(), matrix)
    assert np.isfinite(fresh.initial_test.numpy()).all()


def test_without_per_epoch_validation_the_fits_validate_nothing_and_the_figures_stay(monkeypatch):
    """`validate_every_epoch: false`: no validation step in any fit, the sanity check's included;
    the accuracy matrices after each experience are still measured, and are those of the
    validating run, weights too (replay draws its batches from the global random stream, which a
    validation's DataLoader draws from as well)."""
    calls = []
    original = Continual.validation_step
    monkeypatch.setattr(Continual, "validation_step",
                        lambda self, batch, i: calls.append(i) or original(self, batch, i))
    runs = {}
    for validate in (None, False):
        calls.clear()
        net = network({"name": "replay", "memory": {"samples": 60}}, validate_every_epoch=validate)
        measured = run_stream(net, splits(), epochs=2)
        runs[validate] = net, len(calls), measured
    (validating, validated, measured), (quiet, none, quiet_measured) = runs[None], runs[False]
    assert validated > 0 and none == 0  # the validating run is the control
    for split in ("test", "val"):
        assert quiet.matrix(split).shape == (5, 5) and np.isfinite(quiet.matrix(split)).all()
        assert np.array_equal(quiet.matrix(split), validating.matrix(split))
    assert quiet_measured == measured  # the figures logged after each experience, validation's included
    assert quiet.summary("val")["average_accuracy"] == validating.summary("val")["average_accuracy"]
    for name, value in validating.state_dict().items():
        assert torch.equal(quiet.state_dict()[name], value), name


def test_the_loss_is_logged_as_a_per_step_self_log_would_log_it():
    """The module logs `train/loss_step` and `train/loss_epoch` without a `self.log` at every step:
    the loggers receive the same points (steps and values) as from `self.log("train/loss",
    on_step=True, on_epoch=True)`, the reference below."""
    from pytorch_lightning.loggers import Logger

    class Recorder(Logger):
        name, version = "recorder", 0

        def __init__(self):
            super().__init__()
            self.points = []

        def log_metrics(self, metrics, step=None):
            self.points += [(step, key, value) for key, value in metrics.items() if key.startswith("train/loss")]

        def log_hyperparams(self, *args, **kwargs):
            pass

    class PerStepLog(Continual):
        def training_step(self, batch, batch_idx):
            loss = self.strategy.loss(batch)
            self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(batch["label"]))
            return loss

        def on_train_batch_end(self, outputs, batch, batch_idx):
            self.strategy.after_step()

    logged = {}
    for cls in (Continual, PerStepLog):
        spec = ContinualSpec(kind="continual", strategy={"name": "replay", "memory": {"samples": 60}}, hidden=[32])
        torch.manual_seed(0)
        net = cls(spec, TrainSpec(optimizer={"name": "adam", "lr": 0.01, "weight_decay": 0},
                                  scheduler={"name": "none"}), (1, 8, 8), 10)
        experiment = SimpleNamespace(seed=0, data=DataSpec(batch_size=16), train=SimpleNamespace(max_epochs=2))
        recorder = Recorder()
        for index, phase in enumerate(net.phases(experiment, splits())):
            pl.seed_everything(index, verbose=False)
            trainer = pl.Trainer(max_epochs=phase.max_epochs, logger=recorder, log_every_n_steps=3,
                                 enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                                 accelerator="cpu")
            trainer.fit(net, datamodule=phase.data)
            net.after_phase(index, phase)
        logged[cls] = recorder.points
    assert {key for _, key, _ in logged[Continual]} == {"train/loss_step", "train/loss_epoch"}
    assert len([p for p in logged[Continual] if p[1] == "train/loss_step"]) >= 5
    assert logged[Continual] == logged[PerStepLog]


def test_the_validation_option_leaves_every_shipped_continual_specs_hash_as_it_was():
    """Null by default, `validate_every_epoch` is left out of both hashes: every shipped continual
    spec hashes as it did before the setting existed; set, it counts."""
    from pathlib import Path

    from pipeline.spec.experiment import OPERATIONAL_TRAIN, digest, spec_hash, training_hash
    from pipeline.spec.load import load

    paths = sorted((Path(__file__).resolve().parents[2] / "specs").glob("continual_*.yaml"))
    assert len(paths) > 20
    for path in paths:
        spec = load(path)
        assert spec.model.validate_every_epoch is None, path.name
        whole = spec.model_dump(mode="json", exclude={"name": True, "description": True, "tracking": True,
                                                      "seeds": True, "train": set(OPERATIONAL_TRAIN)})
        training = spec.model_dump(mode="json", include={"seed", "data", "model", "train", "upstream"},
                                   exclude={"data": {"probe_subset", "eval_subset"}, "train": set(OPERATIONAL_TRAIN)})
        for body in (whole, training):
            del body["model"]["validate_every_epoch"]  # as the spec was dumped before the setting
        assert spec_hash(spec) == digest(whole), path.name
        assert training_hash(spec) == digest(training), path.name
    off = load(paths[0], ["model.validate_every_epoch=false"])
    assert spec_hash(off) != spec_hash(load(paths[0]))


def test_naive_forgets_what_cumulative_keeps():
    data = splits(n_train=400)
    naive, cumulative = network(), network({"name": "cumulative"})
    run_stream(naive, data, epochs=3)
    run_stream(cumulative, data, epochs=3)
    # Class-incremental fine-tuning: the first experience is forgotten once later ones train.
    assert naive.matrix()[0, 0] > 0.9 and naive.matrix()[-1, 0] < 0.2
    assert cumulative.matrix()[-1, 0] > 0.8
    assert cumulative.memory()["memory_samples"] == len(data.train["label"])


def test_joint_is_one_phase_over_everything():
    net = network({"name": "joint"})
    run_stream(net, splits(), epochs=2)
    assert net.matrix().shape == (1, 5)
    assert net.strategy.phases() == [("joint", [0, 1, 2, 3, 4])]


def test_task_incremental_predictions_stay_within_the_task():
    net = network(scenario={"type": "task_incremental"})
    data = splits()
    net.build_stream(data, 0)
    experience = net.experiences[2]
    predicted = net.strategy.scores(experience.test["input"], experience.test["task"]).argmax(dim=1)
    assert set(predicted.tolist()) <= set(experience.classes)
    unmasked = net.strategy.scores(experience.test["input"], None).argmax(dim=1)
    assert not set(unmasked.tolist()) <= set(experience.classes)  # without the task, every class competes


# --- EWC ---


def test_ewc_penalty_is_zero_at_the_anchor_and_grows_with_fisher_weighted_distance():
    net = network({"name": "ewc", "ewc_lambda": 4.0})
    strategy = net.strategy
    params = strategy.plastic()
    fisher = {name: torch.rand_like(p) for name, p in params.items()}
    strategy.keep("fisher_", fisher)
    strategy.keep("anchor_", params)
    strategy.consolidated.fill_(True)
    assert strategy.penalty().item() == pytest.approx(0.0)
    with torch.no_grad():
        shift = {name: torch.randn_like(p) * 0.1 for name, p in params.items()}
        for name, p in params.items():
            p.add_(shift[name])
    expected = 0.5 * 4.0 * sum((fisher[n] * shift[n] ** 2).sum() for n in params)
    assert strategy.penalty().item() == pytest.approx(expected.item(), rel=1e-5)
    with torch.no_grad():
        for name, p in params.items():
            p.add_(shift[name])  # twice as far: four times the penalty
    assert strategy.penalty().item() == pytest.approx(4 * expected.item(), rel=1e-5)


def test_ewc_fisher_is_the_mean_squared_per_example_gradient():
    net = network({"name": "ewc"})
    data = splits(n_train=60)
    net.build_stream(data, 0)
    fields = net.experiences[0].train
    found = net.strategy.fisher(fields)
    expected = {name: torch.zeros_like(p) for name, p in net.strategy.plastic().items()}
    for i in range(len(fields["label"])):
        net.zero_grad()
        log_probs = torch.log_softmax(net.logits(fields["input"][i:i + 1]), dim=1)
        log_probs[0, fields["label"][i]].backward()
        for name, p in net.strategy.plastic().items():
            expected[name] += p.grad**2 / len(fields["label"])
    for name in expected:
        torch.testing.assert_close(found[name], expected[name], rtol=1e-4, atol=1e-7)


def test_online_ewc_decays_the_earlier_fisher():
    net = network({"name": "ewc", "decay": 0.5})
    net.build_stream(splits(), 0)
    first = net.strategy.fisher(net.experiences[0].train)
    net.strategy.end_experience(0)
    net.rows.fill_(1)
    second = net.strategy.fisher(net.experiences[1].train)
    net.strategy.end_experience(1)
    name = next(iter(first))
    torch.testing.assert_close(net.strategy.kept("fisher_", name), 0.5 * first[name] + second[name])


# --- SI and LwF ---


def test_si_importance_is_positive_where_weights_moved_and_zero_penalty_at_the_anchor():
    net = network({"name": "si"})
    run_stream(net, splits(), epochs=1)
    importance = [net.strategy.kept("importance_", n) for n in net.strategy.plastic()]
    assert all((value >= 0).all() for value in importance)
    assert sum(value.sum() for value in importance) > 0
    penalty = sum((net.strategy.kept("importance_", n) * (p - net.strategy.kept("anchor_", n)) ** 2).sum()
                  for n, p in net.strategy.plastic().items())
    assert penalty.item() == pytest.approx(0.0)


def test_lwf_adds_nothing_while_the_network_is_what_it_kept():
    net = network({"name": "lwf", "alpha": 1.0})
    data = splits()
    net.build_stream(data, 0)
    net.strategy.end_experience(0)
    batch = net.experiences[1].train
    net.phase = 1
    plain = net.cross_entropy(net.logits(batch["input"]), batch)
    assert net.strategy.loss(batch).item() == pytest.approx(plain.item(), rel=1e-5)
    with torch.no_grad():
        net.head.weight.add_(torch.randn_like(net.head.weight))
    changed = net.strategy.loss(batch) - net.cross_entropy(net.logits(batch["input"]), batch)
    assert changed.item() > 1e-4


# --- replay and GDumb ---


def test_reservoir_keeps_every_example_of_the_stream_with_equal_probability():
    from pipeline.models.continual.strategies.rehearsal import Replay

    kept_first = []
    for trial in range(200):
        net = network({"name": "replay", "memory": {"samples": 10}, "policy": "reservoir"})
        net.build_stream(splits(n_train=200), trial)
        strategy: Replay = net.strategy
        for index in range(2):
            strategy.end_experience(index)
            assert len(strategy.stored()["label"]) == min(10, sum(len(e.train["label"])
                                                               for e in net.experiences[: index + 1]))
        first = set(net.experiences[0].classes)
        kept_first.append(sum(int(y) in first for y in strategy.stored()["label"]))
    # Two experiences of equal size: half the reservoir from each, on average.
    assert np.mean(kept_first) == pytest.approx(5.0, abs=0.5)


def test_class_balanced_replay_gives_each_class_seen_an_equal_share():
    net = network({"name": "replay", "memory": {"samples": 60}})
    net.build_stream(splits(n_train=400), 0)
    net.strategy.end_experience(0)
    assert torch.bincount(net.strategy.stored()["label"], minlength=10).max() == 30
    net.strategy.end_experience(1)
    counts = torch.bincount(net.strategy.stored()["label"], minlength=10)
    assert sorted(counts[counts > 0].tolist()) == [15, 15, 15, 15]


def test_replay_budget_in_bytes_counts_the_stored_inputs_and_labels():
    net = network({"name": "replay", "memory": {"bytes": 65 * 20}})  # 8x8 uint8 images + a label byte
    net.build_stream(splits(), 0)
    net.strategy.end_experience(0)
    assert net.strategy.memory() == {"memory_samples": 20, "memory_bytes": 20 * 65}
    # What is counted is what is held: the label in one byte; the experience, which the label's
    # class gives in a class-incremental stream, not at all.
    strategy = net.strategy
    assert strategy.kept_input.dtype == torch.uint8 and strategy.kept_label.dtype == torch.uint8
    assert strategy.kept_task is None
    classes_of = {c: e.index for e in net.experiences for c in e.classes}
    stored = strategy.stored()
    assert stored["task"].tolist() == [classes_of[int(y)] for y in stored["label"]]


@pytest.mark.parametrize("name", ["replay", "gdumb"])
def test_a_domain_incremental_buffer_keeps_and_counts_each_examples_experience(name: str):
    net = network({"name": name, "memory": {"bytes": 66 * 30}}, scenario={"type": "domain_incremental",
                                                                        "experiences": 3})
    net.build_stream(splits(n_train=400), 0)
    for index in range(2):
        net.strategy.end_experience(index) if name == "replay" else net.strategy.train_fields(index)
    strategy = net.strategy
    assert strategy.kept_task.dtype == torch.uint8
    assert strategy.memory() == {"memory_samples": 30, "memory_bytes": 30 * 66}  # image, label, experience
    assert sorted(set(strategy.stored()["task"].tolist())) == [0, 1]


@pytest.mark.parametrize("scenario", [{}, {"type": "domain_incremental", "experiences": 3}])
def test_a_replay_step_trains_on_the_batch_and_buffer_examples_drawn_at_random(scenario: dict, monkeypatch):
    net = network({"name": "replay", "memory": {"samples": 30}, "batch_size": 7}, scenario=scenario)
    net.build_stream(splits(n_train=400), 0)
    net.strategy.end_experience(0)
    net.phase = 1
    batch = {name: values[:5] for name, values in net.experiences[1].train.items()}
    seen = []
    monkeypatch.setattr(Strategy, "loss", lambda self, fields: seen.append(fields) or torch.zeros(()))
    torch.manual_seed(3)
    net.strategy.loss(batch)
    torch.manual_seed(3)
    drawn = torch.randint(30, (7,))
    kept = net.strategy.stored()
    [trained] = seen
    for name in ("input", "label", "task"):
        assert torch.equal(trained[name], torch.cat([batch[name], kept[name][drawn]])), name
    assert trained["label"].dtype == trained["task"].dtype == torch.int64


def test_replay_state_loads_into_a_freshly_built_network():
    net = network({"name": "replay", "memory": {"samples": 30}})
    net.build_stream(splits(), 0)
    net.strategy.end_experience(0)
    fresh = network({"name": "replay", "memory": {"samples": 30}})
    fresh.load_state_dict(net.state_dict())
    assert torch.equal(fresh.strategy.stored()["input"], net.strategy.stored()["input"])


def test_gdumb_buffer_is_class_balanced_and_training_restarts_from_the_initial_weights():
    net = network({"name": "gdumb", "memory": {"samples": 60}})
    initial = net.head.weight.detach().clone()
    net.build_stream(splits(n_train=400), 0)
    for index in range(3):
        net.strategy.train_fields(index)
    counts = torch.bincount(net.strategy.stored()["label"], minlength=10)
    assert counts.sum() == 60 and sorted(counts[counts > 0].tolist()) == [10] * 6
    size = len(net.strategy.train_fields(2)["label"])  # a resumed phase does not fill it twice
    assert size == 60 and int(net.strategy.filled_through) == 3
    with torch.no_grad():
        net.head.weight.add_(1.0)
    net.strategy.next_experience(3)
    assert torch.equal(net.head.weight, initial)


# --- the energy-based classifier ---


def test_energy_prediction_is_the_lowest_energy_among_the_classes_seen():
    net = network({"name": "energy", })
    net.build_stream(splits(), 0)
    strategy = net.strategy
    for index in range(2):
        strategy.end_experience(index)
    net.phase = 1
    inputs = net.experiences[0].test["input"]
    energies = strategy.energies(inputs)
    seen = list(net.experiences[0].classes + net.experiences[1].classes)
    expected = torch.tensor(seen)[energies[:, seen].argmin(dim=1)]
    assert torch.equal(strategy.scores(inputs, None).argmax(dim=1), expected)


def test_energy_training_contrasts_only_the_current_experience_labels():
    net = network({"name": "energy", })
    net.build_stream(splits(), 0)
    net.phase = 1
    batch = net.experiences[1].train
    net.zero_grad()
    net.strategy.loss(batch).backward()
    grads = net.strategy.label_embedding.weight.grad.abs().sum(dim=1)
    current = set(net.experiences[1].classes)
    for c in range(10):
        assert (grads[c] > 0) == (c in current)


def test_the_labels_trick_contrasts_only_the_current_classes_and_leaves_the_other_rows_alone():
    data = splits()
    trick, plain = network({"name": "naive", "contrast": "current"}), network({"name": "naive"})
    for net in (trick, plain):
        net.build_stream(data, 0)
        net.phase = 1
    batch = trick.experiences[1].train
    current = list(trick.experiences[1].classes)
    logits = trick.logits(batch["input"])
    expected = torch.nn.functional.cross_entropy(logits[:, current], torch.tensor(
        [current.index(label) for label in batch["label"].tolist()]))
    torch.testing.assert_close(trick.strategy.loss(batch), expected)
    for net in (trick, plain):
        net.zero_grad()
        net.strategy.loss(batch).backward()
    moved = trick.head.weight.grad.abs().sum(dim=1) > 0
    assert moved.tolist() == [c in current for c in range(10)]
    assert (plain.head.weight.grad.abs().sum(dim=1) > 0).all()  # plain fine-tuning pushes every row
    # a prediction is still over every class
    assert torch.equal(trick.strategy.scores(batch["input"], None), trick.logits(batch["input"]))
    with pytest.raises(RuntimeError, match="build_stream"):  # no experience: no class to contrast
        network({"name": "naive", "contrast": "current"}).strategy.loss(batch)
    from pipeline.models.continual import strategy_label

    assert [strategy_label(net.spec.strategy) for net in (trick, plain)] == ["naive (labels trick)", "naive"]


def test_the_labels_trick_keeps_what_naive_forgets_in_the_head():
    """With the lower network frozen, earlier classes' head rows are untouched by later experiences."""
    data = splits()
    net = network({"name": "naive", "contrast": "current"}, latent_layer=2, freeze_lower=True)
    net.build_stream(data, 0)
    first = list(net.experiences[0].classes)
    measured = []

    class Keep(pl.Callback):
        def on_train_end(self, trainer, module):
            measured.append(module.head.weight.detach()[first].clone())

    experiment = SimpleNamespace(seed=0, data=DataSpec(batch_size=16), train=SimpleNamespace(max_epochs=1))
    for index, phase in enumerate(net.phases(experiment, data)):
        pl.seed_everything(index, verbose=False)
        pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                   enable_model_summary=False, accelerator="cpu", callbacks=[Keep()]).fit(net, datamodule=phase.data)
        net.after_phase(index, phase)
    assert all(torch.equal(rows, measured[0]) for rows in measured[1:])


def test_ewc_fisher_of_a_convolutional_network_matches_too():
    """Not every layer linear: per-example gradients by torch.func rather than the closed form."""
    from torch import nn

    spec = ContinualSpec(kind="continual", strategy={"name": "ewc"})
    torch.manual_seed(0)

    class Small(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten())
            self.out_dim = 16

    net = Continual(spec, TrainSpec(), (1, 8, 8), 10, encoder=Small())
    net.build_stream(splits(n_train=40), 0)
    fields = net.experiences[0].train
    found = net.strategy.fisher(fields)
    for name, p in net.strategy.plastic().items():
        expected = torch.zeros_like(p)
        for i in range(len(fields["label"])):
            net.zero_grad()
            torch.log_softmax(net.logits(fields["input"][i:i + 1]), dim=1)[0, fields["label"][i]].backward()
            expected += dict(net.strategy.plastic())[name].grad ** 2 / len(fields["label"])
        torch.testing.assert_close(found[name], expected, rtol=1e-4, atol=1e-7)


def test_a_continual_spec_is_validated_before_any_compute():
    from pydantic import ValidationError

    from pipeline.spec.experiment import ExperimentSpec

    base = {"name": "c", "model": {"kind": "continual"}}
    spec = ExperimentSpec.model_validate(base)
    assert [task.kind for task in spec.downstream] == ["continual"]  # read by its stream by default
    for wrong, message in (
            ({"train": {"strategy": "ddp"}}, "trains in one process"),
            ({"model": {"kind": "continual", "strategy": {"name": "remind"}}}, "set `latent_layer`"),
            ({"model": {"kind": "continual", "latent_layer": 2, "strategy": {"name": "remind"}}},
             "REMIND freezes its lower network from the start: it must be a trained encoder"),
            ({"model": {"kind": "continual", "strategy": {"name": "replay", "memory": {"samples": 5, "bytes": 9}}}},
             "exactly one"),
            ({"model": {"kind": "continual", "strategy": {"name": "dreaming"}}}, "dreaming"),
            ({"model": {"kind": "continual", "scenario": {"class_order": [1, 1, 2]}}}, "repeats a class"),
            ({"model": {"kind": "continual", "scenario": {"type": "domain_incremental"},
                        "strategy": {"name": "naive", "contrast": "current"}}}, "would change nothing in a domain"),
            ({"model": {"kind": "continual", "scenario": {"type": "task_incremental"},
                        "strategy": {"name": "naive", "contrast": "current"}}}, "task-incremental stream already"),
            ({"model": {"kind": "continual", "strategy": {"name": "naive", "contrast": "current"}},
              "train": {"optimizer": {"name": "adam", "weight_decay": 1e-4}}}, "the labels trick leaves the rows"),
            ({"model": {"kind": "continual", "strategy": {"name": "energy"}},
              "train": {"optimizer": {"name": "adam", "weight_decay": 1e-4}}}, "the energy model leaves the rows"),
            ({"model": {"kind": "continual", "validate_every_epoch": False}, "train": {"val_check_interval": 10}},
             "validate_every_epoch: false turns off")):
        with pytest.raises(ValidationError, match=message):
            ExperimentSpec.model_validate({**base, **wrong})
    for strategy in ({"name": "naive", "contrast": "current"}, {"name": "energy"}):  # decoupled decay is fine
        ExperimentSpec.model_validate({**base, "model": {"kind": "continual", "strategy": strategy},
                                       "train": {"optimizer": {"name": "adamw", "weight_decay": 1e-4}}})


def test_task_incremental_lwf_distils_each_earlier_task_on_its_own_classes():
    net = network({"name": "lwf"}, scenario={"type": "task_incremental"})
    net.build_stream(splits(), 0)
    for index in range(2):
        net.strategy.end_experience(index)
    net.phase = 2
    batch = net.experiences[2].train
    with torch.no_grad():
        net.head.weight.add_(torch.randn_like(net.head.weight))
    loss = net.strategy.loss(batch)
    assert torch.isfinite(loss)  # the current task's mask leaves the earlier classes no logits
    plain = net.cross_entropy(net.logits(batch["input"], batch["task"]), batch)
    raw = net.head(net.encoder(batch["input"].float() / 255))
    old = torch.func.functional_call(net, {n: net.strategy.kept("old_", n) for n in net.strategy.network_state()},
                                     (batch["input"],))
    from pipeline.models.continual.strategies import distillation

    expected = sum(distillation(raw[:, list(net.experiences[t].classes)], old[:, list(net.experiences[t].classes)],
                                2.0) for t in range(2))
    assert loss.item() == pytest.approx((plain + expected).item(), rel=1e-5)


@pytest.mark.parametrize("strategy", [{"name": "replay", "memory": {"samples": 60}},
                                      {"name": "gdumb", "memory": {"samples": 60}}])
def test_a_permuted_stream_keeps_examples_of_every_experience(strategy: dict):
    net = network(strategy, scenario={"type": "domain_incremental", "experiences": 3})
    net.build_stream(splits(n_train=400), 0)
    for index in range(3):
        if strategy["name"] == "replay":
            net.strategy.end_experience(index)
        else:
            net.strategy.train_fields(index)
    per_experience = torch.bincount(net.strategy.stored()["task"], minlength=3)
    assert per_experience.tolist() == [20, 20, 20]


@pytest.mark.parametrize("strategy", ["replay", "gdumb"])
def test_a_budget_too_small_for_one_example_is_an_error_that_says_so(strategy: str):
    net = network({"name": strategy, "memory": {"bytes": 10}})
    net.build_stream(splits(), 0)
    with pytest.raises(ValueError, match="holds no example"):
        net.strategy.end_experience(0) if strategy == "replay" else net.strategy.train_fields(0)


def test_a_loaded_energy_classifier_predicts_outside_the_stream():
    net = network({"name": "energy"})
    run_stream(net, splits(), epochs=1)
    fresh = network({"name": "energy"})
    fresh.load_state_dict(net.state_dict())
    inputs = splits().test["input"]
    assert torch.equal(fresh.predict(inputs), net.predict(inputs))  # no stream built: every class seen counts
