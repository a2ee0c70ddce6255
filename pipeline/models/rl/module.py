"""The value-based agents as Lightning modules: one Q-network (an MLP torso and a head of one
value, C51's atoms or QR-DQN's quantiles per action), epsilon-greedy exploration on a linear
schedule, a replay buffer and a target network. Each training batch takes `train_frequency`
environment steps, then `gradient_steps` updates; validation plays evaluation episodes."""

from __future__ import annotations

import copy
import math
import pickle

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from pipeline.models.base import Phase, Trainable
from pipeline.models.rl import AgentSpec, losses
from pipeline.models.rl.environments import ENVIRONMENTS, make
from pipeline.spec.components import TrainSpec

EVAL_SEED = 10_000_000
"""Validation episode i of epoch e starts from seed EVAL_SEED + 1000 e + i: never a training seed,
never a test episode's (the episodic_return task's start at 1,000,000)."""


class ReplayBuffer:
    """The last `capacity` transitions (observation, action, reward, next observation, whether the
    episode terminated: a truncated one is bootstrapped), sampled uniformly."""

    def __init__(self, capacity: int, observation_shape: tuple[int, ...]):
        self.capacity = capacity
        self.observations = np.zeros((capacity, *observation_shape), dtype=np.float32)
        self.next_observations = np.zeros_like(self.observations)
        self.actions = np.zeros(capacity, dtype=np.int64)
        self.rewards = np.zeros(capacity, dtype=np.float32)
        self.terminated = np.zeros(capacity, dtype=np.float32)
        self.position = self.size = 0

    def add(self, observation, action: int, reward: float, next_observation, terminated: bool) -> None:
        i = self.position
        self.observations[i], self.actions[i], self.rewards[i] = observation, action, reward
        self.next_observations[i], self.terminated[i] = next_observation, float(terminated)
        self.position = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, count: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        index = rng.integers(self.size, size=count)
        return {"observation": torch.from_numpy(self.observations[index]),
                "action": torch.from_numpy(self.actions[index]),
                "reward": torch.from_numpy(self.rewards[index]),
                "next_observation": torch.from_numpy(self.next_observations[index]),
                "terminated": torch.from_numpy(self.terminated[index])}

    ARRAYS = ("observations", "next_observations", "actions", "rewards", "terminated")

    def state(self) -> dict:
        kept = slice(0, self.size)
        return {"position": self.position, "size": self.size,
                **{name: torch.from_numpy(getattr(self, name)[kept].copy()) for name in self.ARRAYS}}

    def load(self, state: dict) -> None:
        self.position, self.size = int(state["position"]), int(state["size"])
        for name in self.ARRAYS:
            getattr(self, name)[: self.size] = state[name].numpy()


class _Steps(Dataset):
    """`count` items, each only its index: a training batch's data is the environment's."""

    def __init__(self, count: int):
        self.count = count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> int:
        return index


class EnvironmentSteps(pl.LightningDataModule):
    def __init__(self, batches_per_epoch: int, validation: bool):
        super().__init__()
        self.batches_per_epoch, self.validation = batches_per_epoch, validation

    def train_dataloader(self) -> DataLoader:
        return DataLoader(_Steps(self.batches_per_epoch), batch_size=None)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(_Steps(1 if self.validation else 0), batch_size=None)


class Torso(nn.Module):
    """The MLP every head reads; its output is the agent's representation (`encoder`)."""

    def __init__(self, in_features: int, hidden: list[int]):
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU()]
            width = size
        self.layers = nn.Sequential(*layers)
        self.out_dim = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x.flatten(1))


class QAgent(Trainable):
    """DQN, C51 or QR-DQN by `spec.kind`; see the package's docstring."""

    validation_metric = "val/episode_return"
    drop_last = False

    def __init__(self, spec: AgentSpec, train: TrainSpec, input_shape: tuple[int, ...], num_classes: int):
        spec.check_input(input_shape)
        if num_classes < 2:
            raise ValueError("an agent needs an environment with at least two actions (the dataset's classes)")
        super().__init__(Torso(math.prod(input_shape), spec.hidden), train)
        self.spec, self.actions, self.input_shape = spec, num_classes, tuple(input_shape)
        self.outputs = {"dqn": 1, "c51": getattr(spec, "atoms", 0), "qr_dqn": getattr(spec, "quantiles", 0)}[spec.kind]
        self.head = nn.Linear(self.encoder.out_dim, num_classes * self.outputs)
        self.target = copy.deepcopy(nn.ModuleDict({"encoder": self.encoder, "head": self.head})).requires_grad_(False)
        if spec.kind == "c51":
            self.register_buffer("support", torch.linspace(spec.v_min, spec.v_max, spec.atoms))
        if spec.kind == "qr_dqn":
            self.register_buffer("taus", losses.quantile_midpoints(spec.quantiles))
        self.register_buffer("env_steps", torch.zeros((), dtype=torch.int64))
        self.register_buffer("target_updated_at", torch.zeros((), dtype=torch.int64))
        self.register_buffer("episodes", torch.zeros((), dtype=torch.int64))
        self.automatic_optimization = False
        self.environment_name: str | None = None
        self.seed = 0
        self.batch_size = 32
        self.env = None
        self.buffer: ReplayBuffer | None = None
        self.rng: np.random.Generator | None = None
        self.observation: np.ndarray | None = None
        self.episode_return = 0.0
        self.episode_length = 0
        self._pending: dict | None = None
        self._returns: list[float] = []

    # --- the network ---

    def outputs_of(self, observations: torch.Tensor, target: bool = False) -> torch.Tensor:
        """[B, actions, outputs]: each action's value, atoms' logits or quantiles."""
        encoder, head = (self.target["encoder"], self.target["head"]) if target else (self.encoder, self.head)
        return head(encoder(observations)).view(len(observations), self.actions, self.outputs)

    def q_from(self, outputs: torch.Tensor) -> torch.Tensor:
        if self.spec.kind == "c51":
            return (outputs.softmax(dim=2) * self.support).sum(dim=2)
        return outputs.mean(dim=2)  # DQN's single value; QR-DQN's quantiles' mean

    @torch.no_grad()
    def q_values(self, observations: torch.Tensor) -> torch.Tensor:
        return self.q_from(self.outputs_of(observations.to(self.device)))

    @torch.no_grad()
    def act(self, observations: np.ndarray, epsilon: float, generator: np.random.Generator) -> np.ndarray:
        """Epsilon-greedy actions [B] for observations [B, ...]; the random draws from `generator`."""
        greedy = self.q_values(torch.as_tensor(observations, dtype=torch.float32)).argmax(dim=1).cpu().numpy()
        explore = generator.random(len(greedy)) < epsilon
        return np.where(explore, generator.integers(self.actions, size=len(greedy)), greedy)

    def epsilon(self, step: int, total: int) -> float:
        spec = self.spec
        fraction = min(1.0, step / max(1.0, spec.exploration_fraction * total))
        return spec.epsilon_start + fraction * (spec.epsilon_end - spec.epsilon_start)

    # --- the loss of each kind ---

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        spec = self.spec
        batch = {key: value.to(self.device) for key, value in batch.items()}
        rows = torch.arange(len(batch["action"]), device=self.device)
        taken = self.outputs_of(batch["observation"])[rows, batch["action"]]  # [B, outputs]
        with torch.no_grad():
            following = self.outputs_of(batch["next_observation"], target=True)
            online_next = self.outputs_of(batch["next_observation"]) if getattr(spec, "double", False) else None
        reward, terminated = batch["reward"], batch["terminated"]
        if spec.kind == "dqn":
            return losses.dqn_loss(taken[:, 0], following[:, :, 0], reward, terminated, spec.gamma,
                                   None if online_next is None else online_next[:, :, 0])
        best = self.q_from(following).argmax(dim=1)
        if spec.kind == "c51":
            target = losses.c51_projection(following[rows, best].softmax(dim=1), reward, terminated, self.support,
                                           spec.gamma)
            return losses.c51_loss(taken, target)
        target = losses.td_target(reward, terminated, following[rows, best], spec.gamma)
        return losses.quantile_huber_loss(taken, target, self.taus, spec.kappa)

    # --- training: the environment's steps, then updates ---

    def phases(self, spec, splits) -> list[Phase]:
        self.environment_name = spec.data.dataset
        self.seed = spec.seed
        self.batch_size = spec.data.batch_size
        batches = math.ceil(self.spec.steps_per_epoch / self.spec.train_frequency)
        return [Phase("fit", EnvironmentSteps(batches, self.spec.eval_episodes > 0), spec.train.max_epochs)]

    def environment(self):
        return make(ENVIRONMENTS[self.environment_name])

    def on_train_start(self) -> None:
        self.buffer = ReplayBuffer(self.spec.buffer_size, self.input_shape)
        if self._pending is not None:
            self._restore(self._pending)
            self._pending = None
            return
        self.env = self.environment()
        self.rng = np.random.default_rng(self.seed)
        self.observation, _ = self.env.reset(seed=self.seed)
        self.episode_return, self.episode_length = 0.0, 0

    @property
    def total_steps(self) -> int:
        return self.spec.steps_per_epoch * self.trainer.max_epochs

    def environment_step(self) -> None:
        step = int(self.env_steps)
        epsilon = self.epsilon(step, self.total_steps)
        action = int(self.act(self.observation[None], epsilon, self.rng)[0])
        following, reward, terminated, truncated, _ = self.env.step(action)
        self.buffer.add(self.observation, action, float(reward), following, terminated)
        self.episode_return += float(reward)
        self.episode_length += 1
        self.env_steps += 1
        if terminated or truncated:
            self.episodes += 1
            self._returns.append(self.episode_return)
            if self.logger is not None:  # against environment steps, the curve's natural axis
                self.logger.log_metrics({"train/episode_return": self.episode_return,
                                         "train/episode_length": float(self.episode_length)},
                                        step=int(self.env_steps))
            following, _ = self.env.reset()
            self.episode_return, self.episode_length = 0.0, 0
        self.observation = following

    def round_steps(self, batch_idx: int) -> int:
        """Environment steps of the epoch's round `batch_idx`: train_frequency, the last round of an
        epoch what is left of steps_per_epoch (so an epoch is exactly steps_per_epoch steps)."""
        return min(self.spec.train_frequency, self.spec.steps_per_epoch - batch_idx * self.spec.train_frequency)

    def training_step(self, batch, batch_idx: int) -> None:
        spec = self.spec
        for _ in range(self.round_steps(batch_idx)):
            self.environment_step()
        optimizer = self.optimizers()
        if int(self.env_steps) >= spec.learning_starts and self.buffer.size >= self.batch_size:
            for _ in range(spec.gradient_steps):
                loss = self.loss(self.buffer.sample(self.batch_size, self.rng))
                optimizer.zero_grad()
                self.manual_backward(loss)
                if spec.max_grad_norm is not None:
                    nn.utils.clip_grad_norm_(self.parameters(), spec.max_grad_norm)
                optimizer.step()
            self.log("train/loss", loss.detach(), on_step=True, on_epoch=True, prog_bar=True, batch_size=1)
        self.maybe_update_target()
        self.log("train/epsilon", self.epsilon(int(self.env_steps), self.total_steps), on_step=True, batch_size=1)
        self.log("train/env_steps", float(self.env_steps), on_step=True, batch_size=1)

    def maybe_update_target(self) -> bool:
        """Updates the target once a multiple of `target_update_interval` environment steps has
        been passed since the last update (checked after each round of steps: at most once a round,
        on the interval's own grid, so a round length that does not divide it adds no drift)."""
        interval = self.spec.target_update_interval
        since = int(self.env_steps) - int(self.target_updated_at)
        if since < interval:
            return False
        self.update_target()
        self.target_updated_at.copy_(self.env_steps - since % interval)
        return True

    @torch.no_grad()
    def update_target(self) -> None:
        tau = self.spec.tau
        online = nn.ModuleDict({"encoder": self.encoder, "head": self.head})
        for target, source in zip(self.target.parameters(), online.parameters(), strict=True):
            target.mul_(1 - tau).add_(source, alpha=tau)

    def on_train_epoch_end(self) -> None:
        if self._returns:
            self.log("train/mean_episode_return", float(np.mean(self._returns)))
            self._returns = []

    def configure_optimizers(self):
        spec = self.train_spec.optimizer
        online = [*self.encoder.parameters(), *self.head.parameters()]
        if spec.name == "sgd":
            return torch.optim.SGD(online, lr=spec.lr, momentum=spec.momentum, weight_decay=spec.weight_decay)
        if spec.name == "adamw":
            return torch.optim.AdamW(online, lr=spec.lr, weight_decay=spec.weight_decay)
        return torch.optim.Adam(online, lr=spec.lr, weight_decay=spec.weight_decay)

    # --- evaluation episodes after each epoch ---

    def validation_step(self, batch, batch_idx: int) -> None:
        if self.environment_name is None or self.trainer.sanity_checking:
            return
        epoch = self.current_epoch
        returns = play(self, self.environment(), self.spec.eval_episodes, self.spec.eval_epsilon,
                       EVAL_SEED + 1000 * epoch)
        self.log("val/episode_return", float(np.mean(returns)), prog_bar=True, batch_size=1)

    # --- checkpoints: the buffer, the generators and the environment mid-episode ---

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self.env is None:
            return
        checkpoint["rl_state"] = {
            "environment": torch.frombuffer(bytearray(pickle.dumps(self.env)), dtype=torch.uint8),
            "rng": self.rng.bit_generator.state,
            "observation": torch.from_numpy(np.asarray(self.observation).copy()),
            "episode_return": self.episode_return,
            "episode_length": self.episode_length,
            "buffer": self.buffer.state(),
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self._pending = checkpoint.get("rl_state")

    def _restore(self, state: dict) -> None:
        self.env = pickle.loads(state["environment"].numpy().tobytes())
        self.rng = np.random.default_rng()
        self.rng.bit_generator.state = state["rng"]
        self.observation = state["observation"].numpy()
        self.episode_return, self.episode_length = float(state["episode_return"]), int(state["episode_length"])
        self.buffer.load(state["buffer"])

    def on_train_end(self) -> None:
        if self.env is not None:
            self.env.close()

    def plot_groups(self) -> dict[str, tuple[str, list[str]]]:
        return {
            "training_curves": ("episode return while training (x: environment steps)",
                                ["train/episode_return"]),
            "evaluation": (f"return of {self.spec.eval_episodes} evaluation episodes after each epoch",
                           ["val/episode_return"]),
            "loss": ("loss and exploration", ["train/loss_step", "train/epsilon"]),
        }


def play(agent, env, episodes: int, epsilon: float, first_seed: int) -> list[float]:
    """Returns of `episodes` episodes, episode i from reset(seed=first_seed + i) with its own
    generator for exploration (the same seeds give every agent the same starts). `agent` None:
    the uniformly random policy."""
    returns = []
    for i in range(episodes):
        rng = np.random.default_rng(first_seed + i)
        observation, _ = env.reset(seed=first_seed + i)
        total, done = 0.0, False
        while not done:
            if agent is None:
                action = int(rng.integers(env.action_space.n))
            else:
                action = int(agent.act(observation[None], epsilon, rng)[0])
            observation, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return returns
