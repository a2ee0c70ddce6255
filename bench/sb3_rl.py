"""Our DQN and QR-DQN against Stable-Baselines3's DQN and sb3-contrib's QR-DQN, at RL Zoo's tuned
settings for each environment (the peer's best), the same environment steps, the same evaluation.

    python bench/sb3_rl.py [--environments cartpole_v1 acrobot_v1] [--kinds dqn qr_dqn]
                           [--seeds 0 1 2 3 4] [--steps N] [--threads 2]

Ours: the shipped spec (specs/<kind>_<environment>.yaml: RL Zoo's DQN settings, written in our
names) trained by the pipeline's own training stage (`pipeline.stages.train.pretrain`) in a
scratch project, per seed. Theirs: `DQN` / `QRDQN("MlpPolicy", ...)` with the same settings as
SB3 spells them (buffer_size, learning_starts, batch_size, train_freq, gradient_steps,
target_update_interval, exploration_fraction, exploration_final_eps, learning_rate, gamma,
net_arch, max_grad_norm 10; QR-DQN's n_quantiles), `learn(total_timesteps=steps)`, seeded.
One difference stays: SB3 updates its target network between environment steps (every
target_update_interval of them), ours after each round of `train_frequency` steps.

Evaluation, both sides alike: 30 episodes at epsilon 0.05, episode i from reset(seed=1,000,000 + i)
with its own generator for exploration (`pipeline.models.rl.module.play`; SB3's greedy action from
`predict(observation, deterministic=True)`). Per side: each seed's mean return, their IQM with a 95%
bootstrap interval over seeds, and environment steps per second of training (wall time of the whole
training: Lightning's stage for ours, `learn` for theirs). Written to results/bench/sb3_rl.{json,txt}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
EPISODES, EPSILON, FIRST_SEED = 30, 0.05, 1_000_000


def load_spec(kind: str, environment: str, seed: int, steps: int | None):
    from pipeline.spec.load import load

    overrides = [f"seed={seed}", "seeds=[]", "downstream=[]"]
    spec = load(ROOT / "specs" / f"{kind}_{environment.removesuffix('_v1')}.yaml", overrides)
    if steps is not None:
        epochs = max(1, steps // spec.model.steps_per_epoch)
        spec = load(ROOT / "specs" / f"{kind}_{environment.removesuffix('_v1')}.yaml",
                    [*overrides, f"train.max_epochs={epochs}"] if steps >= spec.model.steps_per_epoch else
                    [*overrides, "train.max_epochs=1", f"model.steps_per_epoch={steps}"])
    return spec


def steps_of(spec) -> int:
    return spec.model.steps_per_epoch * spec.train.max_epochs


def run_ours(spec) -> dict:
    from pipeline.models.rl.environments import ENVIRONMENTS, make
    from pipeline.models.rl.module import play
    from pipeline.stages.train import pretrain
    from pipeline.upstream import finished

    result = pretrain(spec)
    trained, _ = finished(spec).models()
    returns = play(trained.eval(), make(ENVIRONMENTS[spec.data.dataset]), EPISODES, EPSILON, FIRST_SEED)
    return {"mean_return": float(np.mean(returns)), "returns": returns, "train_s": float(result["wall_time_s"]),
            "steps_per_s": steps_of(spec) / float(result["wall_time_s"])}


def sb3_settings(spec) -> dict:
    model = spec.model
    settings = dict(learning_rate=spec.train.optimizer.lr, buffer_size=model.buffer_size,
                    learning_starts=model.learning_starts, batch_size=spec.data.batch_size, tau=model.tau,
                    gamma=model.gamma, train_freq=model.train_frequency, gradient_steps=model.gradient_steps,
                    target_update_interval=model.target_update_interval,
                    exploration_fraction=model.exploration_fraction, exploration_initial_eps=model.epsilon_start,
                    exploration_final_eps=model.epsilon_end, max_grad_norm=model.max_grad_norm or 1e9,
                    policy_kwargs={"net_arch": list(model.hidden)})
    if model.kind == "qr_dqn":
        settings["policy_kwargs"]["n_quantiles"] = model.quantiles
    return settings


class Greedy:
    """An SB3 model acting as our agents do in `play`: greedy, or uniform with probability epsilon."""

    def __init__(self, model, actions: int):
        self.model, self.actions = model, actions

    def act(self, observations: np.ndarray, epsilon: float, generator: np.random.Generator) -> np.ndarray:
        greedy, _ = self.model.predict(observations, deterministic=True)
        explore = generator.random(len(observations)) < epsilon
        return np.where(explore, generator.integers(self.actions, size=len(observations)), greedy)


def run_sb3(spec, seed: int) -> dict:
    from sb3_contrib import QRDQN
    from stable_baselines3 import DQN

    from pipeline.models.rl.environments import ENVIRONMENTS, make
    from pipeline.models.rl.module import play

    environment = ENVIRONMENTS[spec.data.dataset]
    algorithm = QRDQN if spec.model.kind == "qr_dqn" else DQN
    model = algorithm("MlpPolicy", make(environment), seed=seed, verbose=0, device="cpu", **sb3_settings(spec))
    started = time.perf_counter()
    model.learn(total_timesteps=steps_of(spec))
    train_s = time.perf_counter() - started
    returns = play(Greedy(model, len(environment.actions)), make(environment), EPISODES, EPSILON, FIRST_SEED)
    return {"mean_return": float(np.mean(returns)), "returns": returns, "train_s": train_s,
            "steps_per_s": steps_of(spec) / train_s}


def summary(runs: list[dict], rng: np.random.Generator) -> dict:
    from pipeline.models.rl.statistics import iqm, iqm_interval

    means = np.array([r["mean_return"] for r in runs])
    low, high = iqm_interval(means, 2000, rng)
    return {"iqm": iqm(means), "low": low, "high": high, "seeds": means.tolist(),
            "steps_per_s": float(np.median([r["steps_per_s"] for r in runs]))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--environments", nargs="+", default=["cartpole_v1", "acrobot_v1"])
    parser.add_argument("--kinds", nargs="+", default=["dqn", "qr_dqn"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--steps", type=int, default=None, help="Environment steps (default: the spec's).")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "bench")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    scratch = Path(tempfile.mkdtemp(prefix="sb3_bench_"))
    os.environ["PIPELINE_ROOT"] = str(scratch)
    (scratch / "dvc.yaml").write_text("stages: {}\n")
    (scratch / "data").symlink_to(ROOT / "data") if (ROOT / "data").is_dir() else None
    rng = np.random.default_rng(0)
    table, lines = [], []
    for environment in args.environments:
        for kind in args.kinds:
            ours, theirs = [], []
            for seed in args.seeds:
                spec = load_spec(kind, environment, seed, args.steps)
                ours.append(run_ours(spec))
                theirs.append(run_sb3(spec, seed))
                print(f"{environment} {kind} seed {seed}: ours {ours[-1]['mean_return']:.1f} "
                      f"({ours[-1]['steps_per_s']:.0f} steps/s), SB3 {theirs[-1]['mean_return']:.1f} "
                      f"({theirs[-1]['steps_per_s']:.0f} steps/s)", flush=True)
            row = {"environment": environment, "kind": kind, "steps": steps_of(spec),
                   "ours": summary(ours, rng), "sb3": summary(theirs, rng)}
            table.append(row)
            for side in ("ours", "sb3"):
                s = row[side]
                seeds = ", ".join(f"{v:.0f}" for v in s["seeds"])
                lines.append(f"{environment:12} {kind:7} {side:5} IQM {s['iqm']:8.1f} [{s['low']:.1f}, "
                             f"{s['high']:.1f}]  {s['steps_per_s']:7.0f} env steps/s  seeds {seeds}")
    text = "\n".join(lines)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sb3_rl.json").write_text(json.dumps({"seeds": args.seeds, "episodes": EPISODES, "epsilon": EPSILON,
                                                     "rows": table}, indent=2) + "\n")
    (args.out / "sb3_rl.txt").write_text(text + "\n")


if __name__ == "__main__":
    main()
