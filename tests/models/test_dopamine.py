"""The dopamine code: TD units with asymmetric rates converge to the expectiles (sign updates: the
quantiles) of a known reward distribution; the measurements recover what they measure on synthetic
responses; expectile imputation recovers a distribution from its expectiles."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.models.dopamine import DistributionalTDSpec
from pipeline.models.dopamine import analysis as A
from pipeline.models.dopamine.module import DistributionalTD
from pipeline.models.dopamine.trials import MAGNITUDE_PROBABILITIES, MAGNITUDES, magnitude_trials
from pipeline.spec.components import TrainSpec

VALUES, PROBABILITIES = np.asarray(MAGNITUDES), np.asarray(MAGNITUDE_PROBABILITIES)


def test_expectiles_and_quantiles_of_a_known_distribution():
    values, probabilities = np.array([0.0, 1.0]), np.array([0.5, 0.5])
    # For a fair coin between 0 and 1 the tau-expectile is tau itself.
    for tau in (0.1, 0.5, 0.8):
        assert A.expectile(values, probabilities, tau) == pytest.approx(tau)
    assert A.expectile(VALUES, PROBABILITIES, 0.5) == pytest.approx(float(VALUES @ PROBABILITIES))
    assert A.quantile(VALUES, PROBABILITIES, 0.5) == 5.0  # the CDF reaches 0.5 at 5 µl


@pytest.mark.parametrize("update", ["expectile", "quantile"])
def test_td_units_converge_to_the_expectiles_or_quantiles(update):
    spec = DistributionalTDSpec(kind="distributional_td", units=9, learning_rate=0.01, tau_low=0.1, tau_high=0.9,
                                update=update)
    model = DistributionalTD(spec, TrainSpec(), (1,), 7)
    trials = magnitude_trials(60000, np.random.default_rng(0))
    model.learn(np.zeros(60000, dtype=np.int64), trials["r"].astype(float))
    statistic = A.expectile if update == "expectile" else A.quantile
    expected = np.array([statistic(VALUES, PROBABILITIES, t) for t in model.taus])
    learnt = model.values[0, 0]
    if update == "expectile":
        assert np.allclose(learnt, expected, atol=0.25 + 0.05 * expected)
    else:  # sign steps settle on the quantile's atom, or between atoms where the CDF crosses tau there
        assert np.all(np.abs(learnt - expected) < 0.6 + 0.1 * expected)
    # the classical null: every unit at the mean (expectile) or the median (quantile)
    null = model.values[1, 0]
    assert np.ptp(null) == 0 and null[0] == pytest.approx(statistic(VALUES, PROBABILITIES, 0.5), rel=0.1)


def test_fit_units_recovers_reversal_points_and_asymmetries():
    rewards = np.repeat(VALUES, 50)
    points, taus = np.array([0.7, 3.0, 8.0]), np.array([0.2, 0.5, 0.85])
    errors = rewards[:, None] - points[None, :]
    responses = np.where(errors > 0, taus, 1 - taus) * errors
    fitted_points, fitted_taus = A.fit_units(rewards, responses, grid=20000)
    assert np.allclose(fitted_points, points, atol=0.01)
    assert np.allclose(fitted_taus, taus, atol=0.01)
    # interpolating the mean responses instead is biased when the two slopes differ
    assert abs(A.reversal_points(rewards, responses)[0] - 0.7) > 0.05


def test_expectile_imputation_recovers_a_distribution():
    values, probabilities = np.array([1.0, 4.0, 10.0]), np.array([0.3, 0.5, 0.2])
    taus = np.linspace(0.02, 0.98, 30)
    expectiles = np.array([A.expectile(values, probabilities, t) for t in taus])
    decoded = A.impute_distribution(expectiles, taus, samples=60, restarts=5, rng=np.random.default_rng(0))
    assert A.wasserstein(decoded, values, probabilities) < 0.5
    mean_only = A.wasserstein(np.array([float(values @ probabilities)]), values, probabilities)
    assert mean_only > 2.0


def test_optimism_places_the_middle_cue():
    cues = np.repeat([0, 1, 2], 10)
    responses = np.stack([np.repeat([0.0, 0.5, 1.0], 10), np.repeat([0.0, 0.9, 1.0], 10)], axis=1)
    assert np.allclose(A.optimism(cues, responses, 0, 1, 2), [0.5, 0.9])


def test_responses_scale_each_sign_by_the_units_rate():
    spec = DistributionalTDSpec(kind="distributional_td", units=4, response_noise=0.0)
    model = DistributionalTD(spec, TrainSpec(), (1,), 7)
    model.encoder.values.fill_(2.0)
    responses = model.responses(np.zeros(2, dtype=np.int64), np.array([4.0, 0.0]), np.random.default_rng(0))
    taus = model.taus
    assert np.allclose(responses[0, 0], 2.0 * taus) and np.allclose(responses[0, 1], -2.0 * (1 - taus))
    assert np.allclose(responses[1, 0], 1.0) and np.allclose(responses[1, 1], -1.0)  # the null: tau 1/2
