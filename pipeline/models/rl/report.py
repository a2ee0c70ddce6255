"""The reinforcement-learning report: for every agent spec, the interquartile mean over its seeds
of each seed's mean test return, with a 95% bootstrap interval, beside the random policy on the
same episodes; and per kind, over the shipped spec of that kind on each environment
(`<kind>_<environment>`, e.g. dqn_cartpole; quick and scratch specs left out), the IQM over seeds
and environments together of the score normalised from the random policy (0) to the return at
which Gymnasium counts the environment solved (1), the bootstrap resampling each environment's
seeds within it (rliable's stratified bootstrap)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.formatting import Section, table
from pipeline.models.rl.environments import ENVIRONMENTS

if TYPE_CHECKING:  # numpy is imported where it is used: registering the plugin loads none of it
    import numpy as np

KINDS = ("dqn", "c51", "qr_dqn")
RESAMPLES = 2000


def _values(result: dict, metric: str) -> list[float] | None:
    return result.get("metrics", {}).get("episodic_return", {}).get(metric, {}).get("values") or None


def _per_seed(result: dict, metric: str) -> np.ndarray | None:
    import numpy as np

    values = _values(result, metric)
    return np.asarray(values, dtype=float) if values else None


def agents(results: list[dict]) -> list[dict]:
    return [r for r in results if r.get("model") in KINDS and r.get("dataset") in ENVIRONMENTS
            and _values(r, "mean_return") is not None]


def spec_table(results: list[dict], rng: np.random.Generator) -> str:
    from pipeline.models.rl.statistics import iqm, stratified_iqm_interval

    rows = []
    for result in sorted(agents(results), key=lambda r: (r["dataset"], r["model"], r["spec"])):
        returns, random = _per_seed(result, "mean_return"), _per_seed(result, "random_mean_return")
        point, low, high = stratified_iqm_interval({result["dataset"]: returns}, RESAMPLES, rng)
        rows.append([f"`{result['spec']}`", result["model"], ENVIRONMENTS[result["dataset"]].gym_id,
                     f"**{point:.1f}** [{low:.1f}, {high:.1f}]", f"{iqm(random):.1f}" if random is not None else "-",
                     ", ".join(f"{v:.0f}" for v in returns), str(len(returns))])
    columns = ("spec", "kind", "environment", "IQM of the seeds' mean returns [95% CI]", "random policy",
               "each seed's mean return", "seeds")
    return table(rows, columns) if rows else ""


def kind_table(results: list[dict], rng: np.random.Generator) -> str:
    import numpy as np

    from pipeline.models.rl.statistics import stratified_iqm_interval

    rows = []
    for kind in KINDS:
        scores: dict[str, np.ndarray] = {}
        for result in agents(results):
            random = _per_seed(result, "random_mean_return")
            shipped = f"{kind}_{result['dataset'].removesuffix('_v1').replace('_', '')}"
            if result["model"] != kind or random is None or result["spec"] != shipped:
                continue
            solved = ENVIRONMENTS[result["dataset"]].solved_return
            normalised = (_per_seed(result, "mean_return") - random) / (solved - random)
            scores[result["dataset"]] = np.concatenate([scores.get(result["dataset"], np.zeros(0)), normalised])
        if scores:
            point, low, high = stratified_iqm_interval(scores, RESAMPLES, rng)
            rows.append([kind, ", ".join(ENVIRONMENTS[name].gym_id for name in sorted(scores)),
                         f"**{point:.3f}** [{low:.3f}, {high:.3f}]", str(sum(len(v) for v in scores.values()))])
    columns = ("kind", "environments", "IQM of normalised score [95% stratified CI]", "runs")
    return table(rows, columns) if rows else ""


def sections(results: list[dict], figures: Path | None = None, link: str = "", check: bool = False) -> list[Section]:
    """The report hook (`Plugin.report`). numpy and scipy are imported here, not with the module:
    the report stage starts without them for every other spec."""
    if not agents(results):
        return []
    import numpy as np

    rng = np.random.default_rng(0)  # the intervals are the same at every report
    per_spec = spec_table(results, rng)
    per_kind = kind_table(results, rng)
    text = ("Each seed's mean return over its test episodes (epsilon 0.05, the same episode seeds for every "
            "agent and the random policy); over seeds their interquartile mean with a 95% bootstrap interval "
            "(Agarwal et al. 2021).\n\n" + per_spec)
    if per_kind:
        text += ("\nPer kind, over its shipped specs (`<kind>_<environment>`): each run's score normalised from the "
                 "random policy's return (0) to the return at which Gymnasium counts the environment solved (1: "
                 "475 on CartPole-v1, -100 on Acrobot-v1), the IQM over all runs, the bootstrap resampling each "
                 "environment's runs within it.\n\n" + per_kind)
    return [Section("Reinforcement learners: interquartile mean over seeds", text)]
