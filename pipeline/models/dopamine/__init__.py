"""The dopamine code (Dabney et al. 2020): a population of value units, each learning by TD with
its own rates for positive and negative prediction errors, alpha+ = alpha tau and alpha- =
alpha (1 - tau). A unit's value converges to the tau-expectile of the reward distribution (or, with
`update: quantile`, sign updates, to its tau-quantile), so the population holds the distribution,
not its mean. Beside it, in the same run and on the same trials, the classical-TD null: as many
units all with tau = 1/2, whose responses get the same noise.

Its data are trials (`reward_magnitudes`: one cue, then one of seven reward magnitudes;
`reward_probabilities`: one of three cues, then a fixed reward with that cue's probability). The
spec, pure pydantic; `trials.py` generates the data, `analysis.py` holds the measurements (reversal
points, response asymmetries, expectile imputation) as pure functions, `module.py` the populations.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import Field

from pipeline.spec.components import Strict


class DistributionalTDSpec(Strict):
    """Two populations of `units` TD value units, one value per cue each, trained on the same
    training trials: the distributional one with asymmetries tau spread evenly over
    [tau_low, tau_high] (alpha+ = learning_rate tau, alpha- = learning_rate (1 - tau)), and the
    classical null with every tau = 1/2. A unit's response on a trial is its prediction error
    scaled by its own rate for that sign, plus Gaussian noise of `response_noise` (both populations)."""

    kind: Literal["distributional_td"]
    units: int = Field(40, ge=4, description="Value units per population (the paper's recordings: about 40 cells).")
    learning_rate: float = Field(0.02, gt=0, le=1, description="alpha+ + alpha- of every unit.")
    tau_low: float = Field(0.05, gt=0, lt=1)
    tau_high: float = Field(0.95, gt=0, lt=1)
    update: Literal["expectile", "quantile"] = Field(
        "expectile", description="expectile: steps proportional to the error (the tau-expectile); quantile: "
                                 "steps of the error's sign only (the tau-quantile).")
    response_noise: float = Field(
        0.2, ge=0, description="Standard deviation of the noise on each response (in units of the largest "
                               "reward), as recordings have; the same for both populations.")


@runtime_checkable
class ValuePopulations(Protocol):
    """`responses(cues, rewards, generator)` -> each population's responses [trials, units] with
    learning frozen; `taus` the distributional units' asymmetries; `values` [populations, cues, units]."""

    taus: Any
    values: Any

    def responses(self, cues: Any, rewards: Any, generator: Any) -> Any: ...


class DopamineCodeSpec(Strict):
    """What Dabney et al. measured, on the test trials (the recording session), for the
    distributional population and for the classical null: on reward magnitudes, each unit's reversal
    point (where its mean response changes sign) in two random halves of the trials and their
    correlation across units (reliability), each unit's asymmetry estimated from its response
    slopes above and below that point and its correlation with the reversal point, and the reward
    distribution decoded from the population by expectile imputation against the true one
    (Wasserstein-1 distance); on reward probabilities, each unit's response to the 50% cue between
    its responses to the 10% and 90% cues (0: as pessimistic as the 10% cue, 1: as optimistic as the
    90% one) and its correlation with the unit's asymmetry."""

    kind: Literal["dopamine_code"] = "dopamine_code"
    decoded_samples: int = Field(100, ge=10, description="Samples of the distribution expectile imputation finds.")
    restarts: int = Field(10, ge=1, description="Starts of the imputation's optimisation (the best is kept).")
