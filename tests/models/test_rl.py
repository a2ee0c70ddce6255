"""Reinforcement learning: the losses against hand-computed cases, the target network's schedule,
exploration, the replay buffer, the environments as data, the IQM and its intervals, and a killed
training resumed to the same returns."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from pipeline.models.rl import C51Spec, DQNSpec, QRDQNSpec, losses
from pipeline.models.rl.environments import CARTPOLE, generator, reader, rollout
from pipeline.models.rl.module import QAgent, ReplayBuffer, play
from pipeline.models.rl.statistics import iqm, iqm_interval, stratified_iqm_interval
from pipeline.spec.components import TrainSpec
from tests.test_resume import finish, kill_at_epoch, pipeline


def test_c51_projection_by_hand():
    support = torch.tensor([-1.0, 0.0, 1.0])
    probabilities = torch.tensor([[0.2, 0.5, 0.3]] * 3)
    rewards = torch.tensor([0.5, 0.5, 5.0])
    dones = torch.tensor([0.0, 1.0, 0.0])
    projected = losses.c51_projection(probabilities, rewards, dones, support, gamma=0.5)
    # not done: atoms move to 0.5 + 0.5 z = [0, 0.5, 1]: 0.2 lands on atom 0 (index 1), 0.5 splits
    # evenly between indices 1 and 2, 0.3 lands on index 2.
    assert torch.allclose(projected[0], torch.tensor([0.0, 0.45, 0.55]))
    # done: every atom moves to the reward 0.5, half-way between indices 1 and 2.
    assert torch.allclose(projected[1], torch.tensor([0.0, 0.5, 0.5]))
    # beyond v_max: clipped onto the last atom.
    assert torch.allclose(projected[2], torch.tensor([0.0, 0.0, 1.0]))
    assert torch.allclose(projected.sum(dim=1), torch.ones(3))


def test_c51_projection_never_indexes_past_the_last_atom():
    # (v_max - v_min) / delta rounds to a hair above K - 1 on this support in float32.
    support = torch.linspace(-18.234186452188396, 248.3662373251612, 27)
    projected = losses.c51_projection(torch.full((1, 27), 1 / 27), torch.tensor([1e4]), torch.tensor([0.0]),
                                      support, gamma=0.99)
    assert torch.allclose(projected, torch.eye(27)[26:])


def test_c51_loss_is_the_cross_entropy():
    logits = torch.tensor([[0.0, 1.0, 2.0]])
    target = torch.tensor([[0.1, 0.2, 0.7]])
    expected = -(target * torch.log_softmax(logits, dim=1)).sum()
    assert torch.isclose(losses.c51_loss(logits, target), expected)


def test_quantile_huber_loss_against_its_formula():
    torch.manual_seed(0)
    quantiles, targets = torch.randn(2, 3), torch.randn(2, 4) * 2
    taus = losses.quantile_midpoints(3)
    assert torch.allclose(taus, torch.tensor([1 / 6, 1 / 2, 5 / 6]))
    kappa = 1.0
    total = 0.0
    for b in range(2):
        for i in range(3):
            inner = 0.0
            for j in range(4):
                u = float(targets[b, j] - quantiles[b, i])
                huber = 0.5 * u * u if abs(u) <= kappa else kappa * (abs(u) - 0.5 * kappa)
                inner += abs(float(taus[i]) - (1.0 if u < 0 else 0.0)) * huber / kappa
            total += inner / 4
    assert losses.quantile_huber_loss(quantiles, targets, taus, kappa).item() == pytest.approx(total / 2, rel=1e-5)


def test_quantile_regression_finds_the_quantiles():
    torch.manual_seed(0)
    samples = torch.randn(4000) * 2 + 1
    theta = torch.zeros(1, 5, requires_grad=True)
    taus = losses.quantile_midpoints(5)
    optimizer = torch.optim.Adam([theta], lr=0.05)
    for _ in range(600):
        optimizer.zero_grad()
        losses.quantile_huber_loss(theta, samples[torch.randint(4000, (256,))][None], taus, kappa=0.1).backward()
        optimizer.step()
    expected = torch.quantile(samples, taus)
    assert torch.allclose(theta.detach()[0], expected, atol=0.15)


def test_dqn_loss_and_double_dqn_by_hand():
    q_taken = torch.tensor([1.0])
    next_target = torch.tensor([[2.0, 5.0]])
    next_online = torch.tensor([[3.0, 1.0]])  # the online network prefers action 0
    reward, done = torch.tensor([1.0]), torch.tensor([0.0])
    # DQN: 1 + 0.5 * 5 = 3.5; error 2.5 -> Huber 2.0. Double: 1 + 0.5 * 2 = 2; error 1 -> 0.5.
    assert losses.dqn_loss(q_taken, next_target, reward, done, 0.5).item() == pytest.approx(2.0)
    assert losses.dqn_loss(q_taken, next_target, reward, done, 0.5, next_online).item() == pytest.approx(0.5)
    assert losses.dqn_loss(q_taken, next_target, reward, torch.tensor([1.0]), 0.5).item() == pytest.approx(0.0)


def agent(kind: str = "dqn", **settings) -> QAgent:
    spec = {"dqn": DQNSpec, "c51": C51Spec, "qr_dqn": QRDQNSpec}[kind](kind=kind, hidden=[16], **settings)
    torch.manual_seed(0)
    return QAgent(spec, TrainSpec(), (4,), 2)


def test_double_dqn_takes_the_next_action_by_the_online_network():
    rng = np.random.default_rng(0)
    buffer = ReplayBuffer(64, (4,))
    for _ in range(64):
        buffer.add(rng.normal(size=4), int(rng.integers(2)), 1.0, rng.normal(size=4), False)
    batch = buffer.sample(32, np.random.default_rng(1))
    plain, double = agent("dqn"), agent("dqn", double=True)
    double.load_state_dict(plain.state_dict())
    assert torch.isclose(plain.loss(batch), double.loss(batch))  # target = online: the same action
    with torch.no_grad():
        for p in plain.target.parameters():
            p.add_(torch.randn_like(p))
    double.load_state_dict(plain.state_dict())
    following = plain.outputs_of(batch["next_observation"], target=True)[:, :, 0]
    online = plain.outputs_of(batch["next_observation"])[:, :, 0]
    taken = plain.outputs_of(batch["observation"])[torch.arange(32), batch["action"], 0]
    expected = losses.dqn_loss(taken, following, batch["reward"], batch["terminated"], 0.99, online)
    assert torch.isclose(double.loss(batch), expected)
    assert not torch.isclose(plain.loss(batch), expected)


class _Timeout:
    """A fake environment whose every episode is cut by its time limit after 3 steps (truncated,
    never terminated) except the second, which terminates."""

    def __init__(self):
        self.t, self.episode = 0, 0

    def reset(self, seed=None):
        self.t = 0
        return np.zeros(4, dtype=np.float32), {}

    def step(self, action):
        self.t += 1
        ended = self.t == 3
        terminated = ended and self.episode == 1
        truncated = ended and not terminated
        if ended:
            self.episode += 1
        return np.full(4, self.t, dtype=np.float32), 1.0, terminated, truncated, {}


def test_truncated_episodes_are_bootstrapped_and_terminated_ones_are_not():
    model = agent()
    model.buffer, model.env, model.rng = ReplayBuffer(20, (4,)), _Timeout(), np.random.default_rng(0)
    model.observation, _ = model.env.reset()
    model.trainer = type("T", (), {"max_epochs": 1, "logger": None, "loggers": []})()  # what the step reads
    for _ in range(9):
        model.environment_step()
    assert model.buffer.terminated[:9].tolist() == [0, 0, 0, 0, 0, 1, 0, 0, 0]
    assert model.buffer.next_observations[2].tolist() == [3.0] * 4  # the last observation, kept
    assert int(model.episodes) == 3 and int(model.env_steps) == 9


def test_an_epoch_is_exactly_its_steps():
    model = agent(steps_per_epoch=1000, train_frequency=256)
    rounds = [model.round_steps(i) for i in range(math.ceil(1000 / 256))]
    assert rounds == [256, 256, 256, 232] and sum(rounds) == 1000


def test_target_updates_stay_on_the_intervals_grid():
    model = agent(target_update_interval=250, train_frequency=4)
    updates = []
    for _ in range(250):  # 1,000 steps in rounds of 4
        model.env_steps += 4
        if model.maybe_update_target():
            updates.append(int(model.env_steps))
    assert updates == [252, 500, 752, 1000]  # checked after rounds: at most one round late, never drifting
    assert int(model.target_updated_at) == 1000


def test_the_target_network_updates_when_it_should():
    model = agent(target_update_interval=500, tau=0.5)
    online = [p.detach().clone() for p in (*model.encoder.parameters(), *model.head.parameters())]
    with torch.no_grad():
        for p in (*model.encoder.parameters(), *model.head.parameters()):
            p.add_(1.0)
    before = [p.detach().clone() for p in model.target.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(before, online, strict=True))
    model.env_steps.fill_(499)
    assert not model.maybe_update_target()
    assert all(torch.equal(a, b) for a, b in zip(model.target.parameters(), before, strict=True))
    model.env_steps.fill_(500)
    assert model.maybe_update_target() and int(model.target_updated_at) == 500
    for target, old in zip(model.target.parameters(), before, strict=True):
        assert torch.allclose(target, old + 0.5)  # tau 0.5 of the way to the online weights (+1)
    model.env_steps.fill_(999)
    assert not model.maybe_update_target()


@pytest.mark.parametrize("kind", ["dqn", "c51", "qr_dqn"])
def test_every_kind_has_q_values_and_a_finite_loss(kind):
    model = agent(kind)
    buffer = ReplayBuffer(50, (4,))
    rng = np.random.default_rng(0)
    for _ in range(50):
        buffer.add(rng.normal(size=4), int(rng.integers(2)), 1.0, rng.normal(size=4), bool(rng.random() < 0.1))
    assert model.q_values(torch.zeros(3, 4)).shape == (3, 2)
    loss = model.loss(buffer.sample(16, rng))
    assert torch.isfinite(loss) and loss.requires_grad
    loss.backward()
    assert all(p.grad is None for p in model.target.parameters())


def test_exploration_schedule_and_acting():
    model = agent(epsilon_start=1.0, epsilon_end=0.1, exploration_fraction=0.5)
    assert model.epsilon(0, 1000) == 1.0
    assert model.epsilon(250, 1000) == pytest.approx(0.55)
    assert model.epsilon(500, 1000) == pytest.approx(0.1) == model.epsilon(900, 1000)
    observations = np.random.default_rng(0).normal(size=(500, 4)).astype(np.float32)
    greedy = model.q_values(torch.from_numpy(observations)).argmax(dim=1).numpy()
    assert np.array_equal(model.act(observations, 0.0, np.random.default_rng(1)), greedy)
    random = model.act(observations, 1.0, np.random.default_rng(1))
    assert 0.4 < (random == 1).mean() < 0.6
    with pytest.raises(ValidationError, match="above epsilon_start"):
        DQNSpec(kind="dqn", epsilon_start=0.1, epsilon_end=0.5)


def test_replay_buffer_wraps_and_restores():
    buffer = ReplayBuffer(3, (2,))
    for i in range(5):
        buffer.add(np.full(2, i), i % 2, float(i), np.full(2, i + 1), i == 4)
    assert buffer.size == 3 and buffer.position == 2
    assert sorted(buffer.rewards.tolist()) == [2.0, 3.0, 4.0]  # the oldest two overwritten
    copy = ReplayBuffer(3, (2,))
    copy.load(buffer.state())
    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    a, b = buffer.sample(8, rng_a), copy.sample(8, rng_b)
    assert all(torch.equal(a[key], b[key]) for key in a)


def test_environment_rollouts_are_seeded_and_read(tmp_path):
    first, second = rollout(CARTPOLE, 300, seed=3), rollout(CARTPOLE, 300, seed=3)
    assert all(np.array_equal(first[k], second[k]) for k in first)
    assert first["x"].shape == (300, 4) and set(first["y"]) <= {0, 1} and first["d"].sum() >= 1
    generator(CARTPOLE)(tmp_path)
    data = reader(CARTPOLE)(tmp_path)
    assert data.classes == ("push left", "push right")
    assert data.train["input"].shape == (5000, 4) and data.train["label"].dtype == np.int64


def test_play_uses_the_same_episode_seeds_for_everyone():
    from pipeline.models.rl.environments import make

    random_a = play(None, make(CARTPOLE), 4, 1.0, first_seed=7)
    random_b = play(None, make(CARTPOLE), 4, 1.0, first_seed=7)
    assert random_a == random_b and all(r >= 8 for r in random_a)
    model = agent()
    greedy = play(model, make(CARTPOLE), 3, 0.0, first_seed=7)
    assert greedy == play(model, make(CARTPOLE), 3, 0.0, first_seed=7)


def test_iqm_and_its_bootstrap_intervals():
    assert iqm([1, 2, 3, 4, 5, 6, 7, 8]) == pytest.approx(4.5)  # the mean of 3, 4, 5, 6
    assert iqm([0, 0, 1, 1, 1, 1, 100, 100]) == pytest.approx(1.0)  # the outliers do not count
    rng = np.random.default_rng(0)
    values = rng.normal(10, 2, size=200)
    low, high = iqm_interval(values, 1000, rng)
    assert low < iqm(values) < high and high - low < 1.5
    assert iqm_interval(np.full(5, 3.0), 1000, rng) == (3.0, 3.0)
    # Stratified: each environment's runs are resampled within it. Ten runs scoring 1 in one and
    # ten scoring 0 in the other: every resample keeps ten of each, so the IQM (0.5) never moves,
    # where a bootstrap over the pooled runs would.
    assert stratified_iqm_interval({"a": np.ones(10), "b": np.zeros(10)}, 500, rng) == (0.5, 0.5, 0.5)
    pooled = iqm_interval(np.r_[np.ones(10), np.zeros(10)], 500, rng)
    assert pooled[0] < 0.5 < pooled[1]
    point, low, high = stratified_iqm_interval({"a": np.full(10, 1.0), "b": rng.normal(0, 1, 10)}, 500, rng)
    assert low < point < high


QUICK = """\
name: rl_resume
data: {dataset: cartpole_v1, batch_size: 32}
model: {kind: c51, hidden: [32], steps_per_epoch: 300, learning_starts: 100, train_frequency: 4,
        target_update_interval: 100, buffer_size: 1000, eval_episodes: 2}
train: {max_epochs: 5, checkpoint_min_interval_s: 0, optimizer: {name: adam, lr: 0.001, weight_decay: 0},
        scheduler: {name: none}}
downstream: []
"""


def _project(root: Path) -> Path:
    from pipeline import plugins
    from pipeline.data.fetch import fetch_dataset

    (root / "specs").mkdir(parents=True)
    (root / "dvc.yaml").write_text("stages: {}\n")
    fetch_dataset(plugins.datasets()["cartpole_v1"], root=root / "data")
    (root / "specs" / "rl_resume.yaml").write_text(QUICK)
    return root


def _returns(root: Path) -> list[tuple[int, float]]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    [run] = client.search_runs([client.get_experiment_by_name("rl_resume").experiment_id])
    return [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "train/episode_return")]


@pytest.mark.slow
def test_killed_agent_resumes_to_the_same_returns(tmp_path: Path):
    reference = _project(tmp_path / "reference")
    finish(pipeline(reference, "pretrain", "specs/rl_resume.yaml"))
    killed = _project(tmp_path / "killed")
    process = pipeline(killed, "pretrain", "specs/rl_resume.yaml")
    kill_at_epoch(process, killed / "artifacts" / "rl_resume" / "pretrain" / "checkpoints" / "last.ckpt")
    assert "resuming from" in finish(pipeline(killed, "pretrain", "specs/rl_resume.yaml", "--auto-resume"))
    mine = torch.load(killed / "artifacts/rl_resume/pretrain/model.pt", weights_only=True)
    theirs = torch.load(reference / "artifacts/rl_resume/pretrain/model.pt", weights_only=True)
    for key, value in theirs.items():
        assert torch.equal(mine[key], value), key
    assert int(theirs["env_steps"]) == 1500
    returns = _returns(reference)
    assert len(returns) > 20 and _returns(killed) == returns


def test_the_report_aggregates_seeds_and_environments():
    from pipeline.models.rl.report import sections

    def result(spec: str, kind: str, dataset: str, returns: list[float], random: list[float]) -> dict:
        per_seed = {"mean_return": {"values": returns}, "random_mean_return": {"values": random}}
        return {"spec": spec, "model": kind, "dataset": dataset, "metrics": {"episodic_return": per_seed}}

    results = [result("dqn_cartpole", "dqn", "cartpole_v1", [500, 480, 20, 500, 490], [20] * 5),
               result("dqn_acrobot", "dqn", "acrobot_v1", [-100, -90, -80, -500, -85], [-500] * 5),
               result("other", "hebbian", "fashion_mnist", [1.0], [0.0])]
    [section] = sections(results)
    # CartPole's IQM drops the worst (20) and the best seeds: the mean of 480, 490, 500.
    assert "| `dqn_cartpole` | dqn | CartPole-v1 | **490.0** [" in section.markdown
    assert "Acrobot-v1" in section.markdown and "other" not in section.markdown
    # Per kind: the shipped specs only (a quick spec's runs are left out), each run normalised from
    # the random policy (0) to the solved return (1: 475, -100): CartPole [1.05, 1.0, 0, 1.05, 1.03],
    # Acrobot [1.0, 1.025, 1.05, 0, 1.0375].
    cartpole = (np.array([500, 480, 20, 500, 490]) - 20) / 455
    acrobot = (np.array([-100, -90, -80, -500, -85]) + 500) / 400
    expected = iqm(np.concatenate([cartpole, acrobot]))
    assert f"| dqn | Acrobot-v1, CartPole-v1 | **{expected:.3f}** [" in section.markdown
    quick = result("dqn_cartpole_quick", "dqn", "cartpole_v1", [0, 0, 0, 0, 0], [20] * 5)
    [with_quick] = sections([*results, quick])
    assert f"| dqn | Acrobot-v1, CartPole-v1 | **{expected:.3f}** [" in with_quick.markdown
    assert sections(results[2:]) == []
