"""The `dopamine_code` task: Dabney et al.'s measurements on the test trials (the recording
session), for the distributional population and, the same way, for the classical-TD null."""

from __future__ import annotations

import numpy as np

from pipeline import plots
from pipeline.evaluators.context import Context, Headline, TaskResult
from pipeline.models.dopamine import analysis
from pipeline.models.dopamine.module import POPULATIONS
from pipeline.models.dopamine.trials import CUE_PROBABILITIES, MAGNITUDE_PROBABILITIES, MAGNITUDES


def run(task, ctx: Context) -> TaskResult:
    model = ctx.trained
    data = ctx.splits.test
    cues = data["input"].argmax(dim=1).numpy()
    rewards = data["reward"].double().numpy()
    rng = np.random.default_rng(ctx.spec.seed)
    scale = float(np.abs(rewards).max()) or 1.0
    if len(np.unique(cues)) == 1:
        return _magnitudes(task, ctx, model, rewards, rng, scale)
    return _probabilities(ctx, model, cues, rewards, rng, scale)


def _magnitudes(task, ctx: Context, model, rewards: np.ndarray, rng: np.random.Generator, scale: float) -> TaskResult:
    responses = model.responses(np.zeros(len(rewards), dtype=np.int64), rewards, rng, scale)
    first, second = analysis.split_halves(len(rewards), rng)
    metrics: dict[str, float] = {}
    found: dict[str, dict] = {}
    values, probabilities = np.asarray(MAGNITUDES), np.asarray(MAGNITUDE_PROBABILITIES)
    for index, population in enumerate(POPULATIONS):
        r = responses[index]
        points, taus = analysis.fit_units(rewards, r)
        (points_1, taus_1), (points_2, _) = (analysis.fit_units(rewards[h], r[h]) for h in (first, second))
        halves = [points_1, points_2]
        reliability, reliability_p = analysis.correlation(points_1, points_2)
        # The asymmetry from one half against the reversal point from the other: no noise shared
        # between the two estimates (from the same trials, a noisy reversal point biases the
        # slopes fitted around it, which correlates them even in the null).
        with_tau, with_tau_p = analysis.correlation(taus_1, points_2)
        decoded = analysis.impute_distribution(points, taus, task.decoded_samples, task.restarts, rng)
        suffix = "" if population == "distributional" else "_classical"
        metrics.update({
            f"reversal_reliability{suffix}": reliability, f"reversal_reliability_p{suffix}": reliability_p,
            f"asymmetry_vs_reversal{suffix}": with_tau, f"asymmetry_vs_reversal_p{suffix}": with_tau_p,
            f"reversal_spread{suffix}": float(np.std(points)),
            f"decoded_wasserstein{suffix}": analysis.wasserstein(decoded, values, probabilities),
        })
        found[population] = {"points": points, "halves": halves, "taus": taus, "decoded": decoded,
                             "cross": (taus_1, points_2)}
    # The decoder's floor: the true expectiles at the true asymmetries, imputed the same way.
    true_taus = model.taus
    truth = np.array([analysis.expectile(values, probabilities, t) for t in true_taus])
    floor = analysis.impute_distribution(truth, true_taus, task.decoded_samples, task.restarts, rng)
    metrics["decoded_wasserstein_true_expectiles"] = analysis.wasserstein(floor, values, probabilities)
    metrics["tau_estimate_vs_true"] = analysis.correlation(found["distributional"]["taus"], true_taus)[0]
    metrics["values_vs_true_expectiles"] = analysis.correlation(model.values[0, 0], truth)[0]
    metrics["wasserstein_of_the_mean"] = analysis.wasserstein(np.array([float(values @ probabilities)]), values,
                                                              probabilities)
    pictures = [
        _response_curves(ctx, rewards, responses),
        _scatter(ctx, {p: found[p]["halves"] for p in POPULATIONS}, "reversal point, half 1 (µl)",
                 "reversal point, half 2 (µl)", "reversal_reliability.png"),
        _scatter(ctx, {p: found[p]["cross"] for p in POPULATIONS}, "asymmetry slope+ / (slope+ + slope-), half 1",
                 "reversal point (µl), half 2", "asymmetry_vs_reversal.png"),
        _decoded(ctx, found, values, probabilities)]
    headline = Headline("reversal points' reliability across two halves of the trials (Pearson r)",
                        metrics["reversal_reliability"],
                        {"classical TD + noise": metrics["reversal_reliability_classical"]}, unit="r")
    return TaskResult(metrics, pictures, headline)


def _probabilities(ctx: Context, model, cues: np.ndarray, rewards: np.ndarray, rng: np.random.Generator,
                   scale: float) -> TaskResult:
    responses = model.cue_responses(cues, rng, scale)
    first, second = analysis.split_halves(len(cues), rng)
    low, middle, high = (int(np.argmin(CUE_PROBABILITIES)), 1, int(np.argmax(CUE_PROBABILITIES)))
    metrics: dict[str, float] = {}
    optimism = {}
    for index, population in enumerate(POPULATIONS):
        r = responses[index]
        q = analysis.optimism(cues, r, low, middle, high)
        halves = [analysis.optimism(cues[h], r[h], low, middle, high) for h in (first, second)]
        suffix = "" if population == "distributional" else "_classical"
        metrics[f"optimism_reliability{suffix}"] = analysis.correlation(*halves)[0]
        metrics[f"optimism_spread{suffix}"] = float(np.std(q))
        metrics[f"optimistic_units{suffix}"] = float(np.mean(q > 0.5))
        optimism[population] = q
    metrics["optimism_vs_tau"] = analysis.correlation(optimism["distributional"], model.taus)[0]
    pictures = [_optimism(ctx, optimism, model.taus)]
    headline = Headline("the 50% cue's place between the 10% and 90% cues: reliability across halves (r)",
                        metrics["optimism_reliability"],
                        {"classical TD + noise": metrics["optimism_reliability_classical"]}, unit="r")
    return TaskResult(metrics, pictures, headline)


def _figure(columns: int = 2, width: float = 10):
    import matplotlib.pyplot as plt

    return plt.subplots(1, columns, figsize=(width, 3.8))


def _response_curves(ctx: Context, rewards: np.ndarray, responses: np.ndarray):
    """Each unit's mean response against the reward, coloured by its place in the population."""
    import matplotlib.pyplot as plt

    fig, axes = _figure()
    for ax, population, r in zip(axes, POPULATIONS, responses, strict=True):
        levels, means = analysis.mean_responses(rewards, r)
        colours = plt.cm.coolwarm(np.linspace(0, 1, means.shape[1]))
        for unit in range(means.shape[1]):
            ax.plot(levels, means[:, unit], color=colours[unit], linewidth=1)
        ax.axhline(0, color="black", linewidth=0.5)
        ax.set_xscale("log")
        ax.set_xlabel("reward (µl)")
        ax.set_title(f"{population}: mean response per unit (blue pessimistic, red optimistic)", fontsize=9)
    axes[0].set_ylabel("response (prediction error, scaled)")
    return plots.save(fig, ctx.out / "response_curves.png")


def _scatter(ctx: Context, pairs: dict[str, tuple[np.ndarray, np.ndarray]], xlabel: str, ylabel: str,
             file: str):
    """One panel per population: y against x, titled with their correlation."""
    fig, axes = _figure()
    for ax, population in zip(axes, POPULATIONS, strict=True):
        x, y = pairs[population]
        ax.scatter(x, y, s=14)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(f"{population}: r = {analysis.correlation(x, y)[0]:.2f}", fontsize=10)
    return plots.save(fig, ctx.out / file)


def _decoded(ctx: Context, found: dict, values: np.ndarray, probabilities: np.ndarray):
    fig, axes = _figure()
    for ax, population in zip(axes, POPULATIONS, strict=True):
        decoded = found[population]["decoded"]
        ax.hist(decoded, bins=np.linspace(-2, 22, 49), density=True, alpha=0.6, label="decoded (expectile imputation)")
        ax.vlines(values, 0, probabilities / 0.5, color="black", linewidth=2, label="true (probability / 0.5 µl)")
        ax.set_xlabel("reward (µl)")
        w = analysis.wasserstein(decoded, values, probabilities)
        ax.set_title(f"{population}: Wasserstein-1 {w:.2f} µl", fontsize=10)
        ax.legend(fontsize=7)
    return plots.save(fig, ctx.out / "decoded_distribution.png")


def _optimism(ctx: Context, optimism: dict, taus: np.ndarray):
    fig, axes = _figure()
    for ax, population in zip(axes, POPULATIONS, strict=True):
        q = optimism[population]
        ax.scatter(taus if population == "distributional" else np.full_like(q, 0.5), q, s=14)
        ax.axhline(0.5, color="black", linewidth=0.5)
        ax.set_xlabel("the unit's asymmetry tau")
        ax.set_ylabel("50% cue response, from 10% (0) to 90% (1)")
        ax.set_title(population, fontsize=10)
    return plots.save(fig, ctx.out / "optimism.png")
