"""The `episodic_return` task: the trained agent's return over evaluation episodes at a small
epsilon, beside a uniformly random policy on the very same episode seeds."""

from __future__ import annotations

import numpy as np

from pipeline import plots
from pipeline.evaluators.context import Context, Headline, TaskResult
from pipeline.models.rl.environments import ENVIRONMENTS, make
from pipeline.models.rl.module import EVAL_SEED, play
from pipeline.models.rl.statistics import iqm, iqm_interval

VALIDATION_SEED = EVAL_SEED + 500_000


def run(task, ctx: Context) -> TaskResult:
    environment = ENVIRONMENTS[ctx.spec.data.dataset]
    agent = ctx.trained.to(ctx.device).eval()
    returns = {
        "agent": play(agent, make(environment), task.episodes, task.epsilon, task.first_seed),
        "random": play(None, make(environment), task.episodes, 1.0, task.first_seed),
    }
    metrics: dict[str, float] = {}
    rng = np.random.default_rng(ctx.spec.seed)
    for who, values in returns.items():
        low, high = iqm_interval(np.asarray(values), task.bootstrap, rng)
        prefix = "" if who == "agent" else "random_"
        metrics.update({f"{prefix}mean_return": float(np.mean(values)), f"{prefix}iqm_return": iqm(values),
                        f"{prefix}iqm_low": low, f"{prefix}iqm_high": high,
                        f"{prefix}min_return": float(np.min(values)), f"{prefix}max_return": float(np.max(values))})
    # The same figures on validation episodes (seeds of the range the training's evaluations use,
    # where settings are chosen), never on the test seeds.
    validation = {"agent": play(agent, make(environment), task.episodes, task.epsilon, VALIDATION_SEED),
                  "random": play(None, make(environment), task.episodes, 1.0, VALIDATION_SEED)}
    metrics.update({"iqm_return_val": iqm(validation["agent"]), "random_iqm_return_val": iqm(validation["random"]),
                    "mean_return_val": float(np.mean(validation["agent"]))})
    picture = _histogram(ctx, returns, environment.gym_id, task)
    label = f"IQM return over {task.episodes} episodes (epsilon {task.epsilon:g})"
    return TaskResult(metrics, [picture], Headline(
        label, metrics["iqm_return"], {"random policy": metrics["random_iqm_return"]}, unit="return",
        validation=metrics["iqm_return_val"], baselines_validation={"random policy": metrics["random_iqm_return_val"]}))


def _histogram(ctx: Context, returns: dict[str, list[float]], gym_id: str, task):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    values = np.concatenate([np.asarray(v) for v in returns.values()])
    bins = np.linspace(values.min(), values.max() + 1e-9, 30)
    for who, color in (("random", "grey"), ("agent", "tab:blue")):
        ax.hist(returns[who], bins=bins, alpha=0.7, color=color,
                label=f"{who} (IQM {iqm(returns[who]):.1f})")
    ax.set_xlabel("episode return")
    ax.set_ylabel("episodes")
    ax.legend(fontsize=8)
    ax.set_title(f"{ctx.spec.name} on {gym_id}: {task.episodes} evaluation episodes, same seeds", fontsize=10)
    return plots.save(fig, ctx.out / "episode_returns.png")
