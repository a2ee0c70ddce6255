"""What Dabney et al. (2020) measured in dopamine recordings, as pure functions of responses
[trials, units] and the rewards that caused them; and the statistics of a known distribution to
test them against (its expectiles and quantiles)."""

from __future__ import annotations

import numpy as np
from scipy import optimize, stats


def expectile(values: np.ndarray, probabilities: np.ndarray, tau: float) -> float:
    """The tau-expectile e of a discrete distribution: tau E[(Z - e)+] = (1 - tau) E[(e - Z)+]."""
    values, probabilities = np.asarray(values, float), np.asarray(probabilities, float)

    def imbalance(e: float) -> float:
        above = np.sum(probabilities * np.maximum(values - e, 0))
        below = np.sum(probabilities * np.maximum(e - values, 0))
        return tau * above - (1 - tau) * below

    return float(optimize.brentq(imbalance, values.min(), values.max()))


def quantile(values: np.ndarray, probabilities: np.ndarray, tau: float) -> float:
    """The tau-quantile of a discrete distribution (the smallest value whose CDF reaches tau)."""
    order = np.argsort(values)
    cumulative = np.cumsum(np.asarray(probabilities, float)[order])
    return float(np.asarray(values, float)[order][np.searchsorted(cumulative, tau)])


def mean_responses(rewards: np.ndarray, responses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the distinct rewards [M], each unit's mean response to each [M, units])."""
    levels = np.unique(rewards)
    return levels, np.stack([responses[rewards == level].mean(axis=0) for level in levels])


def reversal_points(rewards: np.ndarray, responses: np.ndarray) -> np.ndarray:
    """Each unit's reversal point [units]: the reward at which its mean response changes from
    negative to positive, interpolated linearly between the two magnitudes around the change (the
    smallest reward where every response is positive, the largest where every one is negative)."""
    levels, means = mean_responses(rewards, responses)
    points = np.empty(means.shape[1])
    for unit in range(means.shape[1]):
        curve = means[:, unit]
        positive = np.nonzero(curve > 0)[0]
        if len(positive) == 0:
            points[unit] = levels[-1]
        elif positive[0] == 0:
            points[unit] = levels[0]
        else:
            j = positive[0]  # the first positive level; j - 1 is negative
            low, high = curve[j - 1], curve[j]
            points[unit] = levels[j - 1] + (levels[j] - levels[j - 1]) * (-low) / (high - low)
    return points


def fit_units(rewards: np.ndarray, responses: np.ndarray, grid: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """(reversal points [units], asymmetries [units]) fitted jointly: each unit's responses as a
    line through (p, 0) with slope s+ above p and s- below, the p of least squared error searched
    on a grid over the rewards' range (the slopes in closed form for each), and the asymmetry
    s+ / (s+ + s-). Unlike interpolating the mean responses, it is unbiased for a unit whose two
    slopes differ."""
    levels, means = mean_responses(rewards, responses)
    counts = np.array([np.sum(rewards == level) for level in levels], dtype=float)
    candidates = np.linspace(levels[0], levels[-1], grid)
    x = levels[None, :] - candidates[:, None]  # [grid, levels]
    weighted = counts[None, :] * x
    above, below = x > 0, x < 0
    q_up = np.sum(np.where(above, weighted * x, 0), axis=1)  # [grid]
    q_down = np.sum(np.where(below, weighted * x, 0), axis=1)
    s_up = np.where(above, weighted, 0) @ means  # [grid, units]
    s_down = np.where(below, weighted, 0) @ means
    with np.errstate(divide="ignore", invalid="ignore"):
        explained = np.nan_to_num(s_up ** 2 / q_up[:, None]) + np.nan_to_num(s_down ** 2 / q_down[:, None])
    best = explained.argmax(axis=0)  # [units]
    units = np.arange(means.shape[1])
    with np.errstate(divide="ignore", invalid="ignore"):
        slope_up = s_up[best, units] / q_up[best]
        slope_down = s_down[best, units] / q_down[best]
        taus = slope_up / (slope_up + slope_down)
    return candidates[best], np.where(np.isfinite(taus), taus, np.nan)


def split_halves(count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two random halves of `count` trials (indices)."""
    order = rng.permutation(count)
    return np.sort(order[: count // 2]), np.sort(order[count // 2:])


def correlation(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(Pearson r, two-sided p) over the pairs where both are finite; (nan, nan) when either is
    constant."""
    keep = np.isfinite(x) & np.isfinite(y)
    if keep.sum() < 3 or np.ptp(x[keep]) == 0 or np.ptp(y[keep]) == 0:
        return float("nan"), float("nan")
    result = stats.pearsonr(x[keep], y[keep])
    return float(result.statistic), float(result.pvalue)


def impute_distribution(expectiles: np.ndarray, taus: np.ndarray, samples: int, restarts: int,
                        rng: np.random.Generator) -> np.ndarray:
    """Expectile imputation: `samples` values z whose empirical tau_i-expectiles are the given
    expectiles e_i, found by minimising sum_i (tau_i mean (z - e_i)+ - (1 - tau_i) mean (e_i - z)+)^2
    (L-BFGS, from `restarts` random starts within the expectiles' range; the best kept). Sorted."""
    keep = np.isfinite(expectiles) & np.isfinite(taus)
    e, t = expectiles[keep], np.clip(taus[keep], 1e-3, 1 - 1e-3)

    def loss(z: np.ndarray) -> tuple[float, np.ndarray]:
        difference = z[None, :] - e[:, None]  # [units, samples]
        above, below = np.maximum(difference, 0), np.maximum(-difference, 0)
        imbalance = t * above.mean(axis=1) - (1 - t) * below.mean(axis=1)
        gradient = (2 * imbalance[:, None] * np.where(difference > 0, t[:, None], 1 - t[:, None])).sum(axis=0)
        return float(np.sum(imbalance ** 2)), gradient / len(z)

    best = None
    span = (e.min(), e.max()) if np.ptp(e) > 0 else (e.min() - 1, e.max() + 1)
    for _ in range(restarts):
        start = rng.uniform(*span, size=samples)
        result = optimize.minimize(loss, start, jac=True, method="L-BFGS-B")
        if best is None or result.fun < best.fun:
            best = result
    return np.sort(best.x)


def wasserstein(samples: np.ndarray, values: np.ndarray, probabilities: np.ndarray) -> float:
    """Wasserstein-1 distance between decoded samples and the true discrete distribution."""
    return float(stats.wasserstein_distance(samples, values, v_weights=probabilities))


def optimism(cues: np.ndarray, responses: np.ndarray, low: int, middle: int, high: int) -> np.ndarray:
    """Each unit's response to the middle cue placed between its responses to the low and high
    cues [units]: 0 as low as the low cue's, 1 as high as the high cue's, 1/2 half-way."""
    mean = {cue: responses[cues == cue].mean(axis=0) for cue in (low, middle, high)}
    return (mean[middle] - mean[low]) / (mean[high] - mean[low])
