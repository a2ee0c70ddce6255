"""rliable's aggregate (Agarwal et al. 2021): the interquartile mean, and its 95% interval by a
bootstrap that resamples within each stratum (each environment's runs), written on scipy."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats


def iqm(values: Sequence[float] | np.ndarray) -> float:
    """The mean of the middle 50% of the values (scipy's trim_mean, 25% cut from each end)."""
    return float(stats.trim_mean(np.asarray(values, dtype=float), 0.25))


def iqm_interval(values: np.ndarray, resamples: int, rng: np.random.Generator,
                 confidence: float = 0.95) -> tuple[float, float]:
    """The percentile bootstrap interval of the IQM of `values` (resampled with replacement)."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2 or np.all(values == values[0]):
        return float(iqm(values)), float(iqm(values))
    result = stats.bootstrap((values,), lambda x, axis: stats.trim_mean(x, 0.25, axis=axis), n_resamples=resamples,
                             confidence_level=confidence, method="percentile", rng=rng, vectorized=True)
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def stratified_iqm_interval(scores: dict[str, np.ndarray], resamples: int, rng: np.random.Generator,
                            confidence: float = 0.95) -> tuple[float, float, float]:
    """(IQM, low, high) over every run of every stratum (environment), where each bootstrap
    resample draws each stratum's runs from that stratum alone, as rliable does: `scores` maps an
    environment to its runs' (normalised) scores."""
    strata = [np.asarray(v, dtype=float) for v in scores.values()]
    point = iqm(np.concatenate(strata))
    draws = np.empty(resamples)
    for b in range(resamples):
        draws[b] = iqm(np.concatenate([s[rng.integers(len(s), size=len(s))] for s in strata]))
    alpha = (1 - confidence) / 2
    return point, float(np.quantile(draws, alpha)), float(np.quantile(draws, 1 - alpha))
