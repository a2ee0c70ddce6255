"""Environments as datasets. Each registration pins a Gymnasium id and version; what `pipeline
fetch` writes for it is a seeded random-policy rollout (observations, the actions taken as labels,
rewards and episode ends), whose sha256s check that the installed environment still has the
registered dynamics: a changed environment fails at fetch, not as a silently different result.
The rollouts are also data in their own right (an autoencoder's or a classifier's training frames
beside an agent's)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.data.source import DatasetSource, FieldSpec, Readout, RemoteFile
from pipeline.errors import PipelineError
from pipeline.extras import require

if TYPE_CHECKING:  # numpy is imported where it is used: registering the plugin loads none of it
    import numpy as np

ROLLOUT_STEPS = 5000
"""Steps of each split's random-policy rollout."""
ROLLOUT_SEEDS = {"train": 0, "test": 1}
FILES = ("x_train.npy", "y_train.npy", "r_train.npy", "d_train.npy",
         "x_test.npy", "y_test.npy", "r_test.npy", "d_test.npy")


@dataclass(frozen=True)
class Environment:
    name: str
    """The dataset's name (`data.dataset`)."""
    gym_id: str
    """Gymnasium's id, version included."""
    observation: tuple[int, ...]
    actions: tuple[str, ...]
    description: str
    sha256s: tuple[str, ...]
    """Of FILES, in order."""
    solved_return: float
    """Gymnasium's reward_threshold, the return at which the environment counts as solved: the
    top of the normalised score (the random policy's return is its bottom)."""


def gymnasium():
    return require("gymnasium", "rl", "An environment")


def make(environment: Environment, **options):
    """A new instance of the registered environment (checked against the installed Gymnasium's)."""
    gym = gymnasium()
    env = gym.make(environment.gym_id, **options)
    shape, actions = tuple(env.observation_space.shape), int(env.action_space.n)
    if shape != environment.observation or actions != len(environment.actions):
        raise PipelineError(f"{environment.gym_id} in gymnasium {gym.__version__} has observations "
                            f"{env.observation_space.shape} and {env.action_space.n} actions, not the registered "
                            f"{environment.observation} and {len(environment.actions)}")
    return env


def rollout(environment: Environment, steps: int, seed: int) -> dict[str, np.ndarray]:
    """A uniformly random policy for `steps` steps from reset(seed), resetting (seed + episode) at
    each episode's end: observations before each step, actions, rewards, and whether the episode
    ended (terminated or truncated) with that step."""
    import numpy as np

    env = make(environment)
    rng = np.random.default_rng(seed)
    observation, _ = env.reset(seed=seed)
    episode = 0
    columns: dict[str, list] = {"x": [], "y": [], "r": [], "d": []}
    for _ in range(steps):
        action = int(rng.integers(len(environment.actions)))
        following, reward, terminated, truncated, _ = env.step(action)
        ended = terminated or truncated
        for key, value in zip("xyrd", (observation, action, reward, ended), strict=True):
            columns[key].append(value)
        if ended:
            episode += 1
            following, _ = env.reset(seed=seed + 1000 * episode)
        observation = following
    env.close()
    return {"x": np.asarray(columns["x"], dtype=np.float32), "y": np.asarray(columns["y"], dtype=np.int64),
            "r": np.asarray(columns["r"], dtype=np.float32), "d": np.asarray(columns["d"], dtype=np.float32)}


def generator(environment: Environment):
    import numpy as np

    def generate(folder: Path, parents: dict[str, Path] | None = None) -> None:
        for split, seed in ROLLOUT_SEEDS.items():
            for key, array in rollout(environment, ROLLOUT_STEPS, seed).items():
                np.save(folder / f"{key}_{split}.npy", array, allow_pickle=False)
    return generate


def reader(environment: Environment):
    import numpy as np

    def read(folder: Path) -> Readout:
        try:
            arrays = {name: np.load(folder / name, allow_pickle=False) for name in FILES}
        except (OSError, ValueError) as err:
            raise PipelineError(f"{folder}: cannot read the {environment.gym_id} rollout ({err}); run "
                                f"`pipeline fetch {environment.name} --force`") from None

        def split(name: str) -> dict[str, np.ndarray]:
            return {"input": arrays[f"x_{name}.npy"], "label": arrays[f"y_{name}.npy"],
                    "reward": arrays[f"r_{name}.npy"], "done": arrays[f"d_{name}.npy"]}

        return Readout(split("train"), split("test"), environment.actions)
    return read


CARTPOLE = Environment(
    "cartpole_v1", "CartPole-v1", (4,), ("push left", "push right"),
    "Gymnasium's CartPole-v1 (reward 1 per step, episodes end at 500 steps)",
    (
        "0b9cb1ecbb25b0a8cbaea62b51bc61ba399d993daf91e43a2c117a6b69186911",
        "043850e087f167f558f84d0f035aa21d9b8282d91edb068f74eefad68845ec39",
        "0d3eb2f0eb0bc9c09d82924ab321657bf9fbc89afc4d3b0cbf0397473080b457",
        "46b67d92696cd4cf126d1bf8230d9d4be36f36f9df3abe8ff815e8f357e06f34",
        "a472ca29ec121ce68654f73a9f8eae241dbbf61b3b30060695919b5f6ccd0830",
        "5442c42ec5e7d14064283fb9664af3b76f4d5637fcd9b4263dcc3f48372f7131",
        "0d3eb2f0eb0bc9c09d82924ab321657bf9fbc89afc4d3b0cbf0397473080b457",
        "ea81559813dca9c25c77c2a39326946c8bfb45e82485739a1411524a7905fd83",
    ), solved_return=475.0)
ACROBOT = Environment(
    "acrobot_v1", "Acrobot-v1", (6,), ("torque -1", "torque 0", "torque +1"),
    "Gymnasium's Acrobot-v1 (reward -1 per step until the tip swings above the line, at most 500 steps)",
    (
        "d3ebee4f951def1499c6cdd4aba6a0582cedc8eb28538f2aedc342b590ac01c9",
        "40eca820c8fea696c97c6b11383ecf996ddbb8cc17d5182c8623fadec5a5f0fc",
        "8edf0099377ce7cbf9faeeb69d9b5f0997c0dbd7c967cfbd5e91c41ed4b64617",
        "eb157301f0e0ba704421bcdd71840bc42aa3e3542554ff814d146a48a743074b",
        "e9ff3c7479239aa728df5afcb34725bfe00eff44c7731c132d3c1a02d5111114",
        "95f490b5616b13d5ab487e91d20bc0c466d80c7088d719a7469b4d9ae23dcbca",
        "fe7ec86d52f6dd8ed10b9af85aaa834fca4fb79aacc1b924e3fcffdfb67bb9c1",
        "3efd36919e6c55673bcfe23e0b00c19e916cbcb3280965cbbeb02ef5d8d9bc98",
    ), solved_return=-100.0)
ENVIRONMENTS = {environment.name: environment for environment in (CARTPOLE, ACROBOT)}


def generate_cartpole_v1(folder: Path, parents: dict[str, Path] | None = None) -> None:
    generator(CARTPOLE)(folder, parents)


def generate_acrobot_v1(folder: Path, parents: dict[str, Path] | None = None) -> None:
    generator(ACROBOT)(folder, parents)


def read_cartpole_v1(folder: Path) -> Readout:
    return reader(CARTPOLE)(folder)


def read_acrobot_v1(folder: Path) -> Readout:
    return reader(ACROBOT)(folder)


def source(environment: Environment) -> DatasetSource:
    """The dataset registration of an environment (its name is `data.dataset`)."""
    return DatasetSource(
        name=environment.name,
        description=f"{environment.description}: an environment to act in; fetching it records a seeded "
                    f"random-policy rollout of {ROLLOUT_STEPS} steps per split that checks its dynamics",
        files=tuple(RemoteFile(name, sha) for name, sha in zip(FILES, environment.sha256s, strict=True)),
        reader=f"pipeline.models.rl.environments:read_{environment.name}",
        modality="environment",
        fields=(FieldSpec("input", "float32", environment.observation, "the observation before a step"),
                FieldSpec("label", "int64", (), "the action the random policy took"),
                FieldSpec("reward", "float32", (), "the reward of that step"),
                FieldSpec("done", "float32", (), "1 where the episode ended with that step")),
        mirror_env=f"{environment.name.upper()}_DIR",
        generator=f"pipeline.models.rl.environments:generate_{environment.name}",
        fix_hint="install the environment's package: pip install 'pipeline[rl]'",
    )
