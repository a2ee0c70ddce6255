"""Reinforcement learning with value and distributional value: DQN (with Double DQN), C51
(Bellemare et al. 2017) and QR-DQN (Dabney et al. 2018), sharing one Q-network torso, one epsilon-
greedy exploration and one target network. The spec, pure pydantic; `environments.py` registers the
environments as datasets, `losses.py` holds the losses as pure functions, `module.py` the agents.

An environment is named like a dataset (`data: {dataset: cartpole_v1}`): its registration pins the
Gymnasium id and version, and fetching it records a seeded random-policy rollout whose sha256 checks
that the installed environment still has the registered dynamics. Training is the ordinary stage:
each Lightning batch is `train_frequency` environment steps and then `gradient_steps` updates from
the replay buffer; an epoch is `steps_per_epoch` environment steps. The checkpoint holds the replay
buffer, the random generators and the environment itself mid-episode, so a killed run resumes to
the same return curve.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import Field, model_validator

from pipeline.spec.components import Strict


class AgentSpec(Strict):
    """What every value-based agent shares: the network, exploration, replay and target."""

    hidden: list[int] = Field([120, 84], min_length=1, description="The Q-network's hidden widths (MLP torso).")
    steps_per_epoch: int = Field(10000, gt=0, description="Environment steps per epoch (train.max_epochs epochs).")
    buffer_size: int = Field(10000, gt=0, description="Transitions the replay buffer keeps (oldest dropped).")
    learning_starts: int = Field(1000, ge=0, description="Environment steps taken before the first update.")
    train_frequency: int = Field(10, gt=0, description="Environment steps between two rounds of updates.")
    gradient_steps: int = Field(1, gt=0, description="Updates per round (each on a fresh replay batch).")
    gamma: float = Field(0.99, gt=0, le=1, description="The discount.")
    target_update_interval: int = Field(500, gt=0, description="Environment steps between target updates.")
    tau: float = Field(1.0, gt=0, le=1, description="Target update: target <- tau * online + (1 - tau) * target.")
    epsilon_start: float = Field(1.0, ge=0, le=1)
    epsilon_end: float = Field(0.05, ge=0, le=1)
    exploration_fraction: float = Field(
        0.5, gt=0, le=1, description="The share of all environment steps over which epsilon falls linearly.")
    max_grad_norm: float | None = Field(10.0, gt=0, description="Gradient clipping of each update (None: none).")
    eval_episodes: int = Field(10, ge=0, description="Episodes at eval_epsilon after each epoch (val/episode_return).")
    eval_epsilon: float = Field(0.05, ge=0, le=1, description="Exploration of the evaluation episodes.")

    @model_validator(mode="after")
    def _exploration(self) -> AgentSpec:
        if self.epsilon_end > self.epsilon_start:
            raise ValueError(f"epsilon_end ({self.epsilon_end}) above epsilon_start ({self.epsilon_start})")
        return self

    def check_input(self, shape: tuple[int, ...]) -> None:
        if len(shape) != 1:
            raise ValueError(f"the Q-network's torso is an MLP: observations must be vectors, not {list(shape)}")


class DQNSpec(AgentSpec):
    """DQN (Mnih et al. 2015): Q-learning on replayed transitions with a target network; Huber loss
    on the TD error. `double: true` takes the next action by the online network (van Hasselt 2016)."""

    kind: Literal["dqn"]
    double: bool = Field(False, description="Double DQN: argmax by the online network, value by the target.")


class C51Spec(AgentSpec):
    """C51 (Bellemare et al. 2017): each action's return distribution on `atoms` fixed atoms in
    [v_min, v_max]; the target distribution projected onto them; cross-entropy loss."""

    kind: Literal["c51"]
    atoms: int = Field(51, ge=2)
    v_min: float = -100.0
    v_max: float = 100.0

    @model_validator(mode="after")
    def _support(self) -> C51Spec:
        if not self.v_min < self.v_max:
            raise ValueError(f"v_min ({self.v_min}) must be below v_max ({self.v_max})")
        return self


class QRDQNSpec(AgentSpec):
    """QR-DQN (Dabney et al. 2018): each action's return distribution as `quantiles` quantiles at
    the midpoints tau_i = (2i + 1) / 2N, trained by the quantile Huber loss."""

    kind: Literal["qr_dqn"]
    quantiles: int = Field(50, ge=1)
    kappa: float = Field(1.0, gt=0, description="The quantile Huber loss's threshold.")


@runtime_checkable
class Agent(Protocol):
    """Acts in its environment: `act(observations, epsilon, generator)` -> actions; `environment()`
    a new instance of its environment; `q_values(observations)` -> [B, actions]."""

    def act(self, observations: Any, epsilon: float, generator: Any) -> Any: ...

    def environment(self) -> Any: ...

    def q_values(self, observations: Any) -> Any: ...


class EpisodicReturnSpec(Strict):
    """The agent's return over `episodes` evaluation episodes at `epsilon`, each from its own seed
    (the same seeds for every agent and for the random policy scored beside it): mean, interquartile
    mean and a 95% bootstrap interval of the IQM over episodes; the returns' distribution and the
    training curve as PNG."""

    kind: Literal["episodic_return"] = "episodic_return"
    episodes: int = Field(30, gt=0)
    epsilon: float = Field(0.05, ge=0, le=1, description="The evaluation episodes' exploration.")
    first_seed: int = Field(
        1_000_000, ge=0, description="Episode i starts from seed first_seed + i (far from the training's seeds).")
    bootstrap: int = Field(2000, ge=100, description="Bootstrap resamples of the interval.")
