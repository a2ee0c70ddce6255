"""Reinforcement learning's entry: the `dqn`, `c51` and `qr_dqn` kinds, the `episodic_return`
task and the environments (Gymnasium, the `rl` extra), registered as datasets."""

from pipeline.capabilities import Encoder
from pipeline.models.rl import Agent, C51Spec, DQNSpec, EpisodicReturnSpec, QRDQNSpec
from pipeline.models.rl.environments import ACROBOT, CARTPOLE, source
from pipeline.plugins import ModelEntry, Plugin, TaskEntry

_MODULE = "pipeline.models.rl.module:QAgent"


def _returns(data: str) -> list[dict]:
    """An agent is scored by acting; probes of its representation run when listed."""
    return [{"kind": "episodic_return"}]


def _agent(spec, summary: str) -> ModelEntry:
    return ModelEntry(spec=spec, module=_MODULE, summary=summary, modalities=("environment",),
                      provides=(Encoder, Agent), single_process=True, default_tasks=_returns)


PLUGIN = Plugin(
    name="rl",
    summary="Value-based reinforcement learning, expected and distributional: DQN, C51, QR-DQN on Gymnasium "
            "environments registered as datasets",
    models={
        "dqn": _agent(DQNSpec, "DQN (Mnih et al. 2015), Double DQN as an option: replay, a target network, "
                               "epsilon-greedy exploration"),
        "c51": _agent(C51Spec, "C51 (Bellemare et al. 2017): each action's return distribution on fixed atoms, "
                               "the target projected onto them"),
        "qr_dqn": _agent(QRDQNSpec, "QR-DQN (Dabney et al. 2018): each action's return distribution as quantiles, "
                                    "the quantile Huber loss"),
    },
    tasks={
        "episodic_return": TaskEntry(
            EpisodicReturnSpec, "pipeline.models.rl.task", (Agent,),
            "return over evaluation episodes at a small epsilon (mean, IQM and its bootstrap interval) beside a "
            "random policy on the same episode seeds", data="any"),
    },
    datasets=(source(CARTPOLE), source(ACROBOT)),
    report="pipeline.models.rl.report:sections",
)
