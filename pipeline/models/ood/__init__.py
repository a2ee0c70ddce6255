"""Out of distribution: how far a classifier's confidence can be trusted, and whether it knows what
it has never seen. Two tasks for any model that provides a classifier (`calibration`,
`ood_detection`), and one small CNN, `ood_cnn`, carrying the methods: deep ensembles, MC dropout,
last-layer Laplace and energy fine-tuning with outlier exposure. The specs, pure pydantic; the
scores are pure functions in `scores.py`, the network in `module.py`.

Scores of a classifier with logits f(x) (higher = more in-distribution, as the detection metrics
read them): max softmax probability (Hendrycks & Gimpel 2017), max logit (Hendrycks et al. 2022),
and the negative energy T logsumexp(f / T) (Liu et al. 2020), beside the method's own where it has
one (the ensemble's, MC dropout's and Laplace's max predictive probability; energy after outlier
exposure).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from pipeline.models.ood.datasets import LENGTH_NAMES, OUTLIER_NAMES, TEST_NAMES
from pipeline.spec.components import Strict

FAR_OOD = ("ood_digits", "ood_fmnist_inverted", "ood_fmnist_permuted", "ood_gaussian", "ood_uniform")
"""The far-OOD test families of a Fashion-MNIST model (the near-OOD one is `ood_fmnist_four`)."""


class OutlierExposureSpec(Strict):
    """Energy fine-tuning with outlier exposure (Liu et al. 2020), a second phase after the ordinary
    training: the cross-entropy plus `weight` x (mean(max(0, E_in - m_in)^2) + mean(max(0, m_out -
    E_out)^2)), E = -logsumexp(f) the energy of in-distribution (E_in) and outlier (E_out) images, so
    in-distribution energies are pushed below m_in and outliers' above m_out."""

    families: list[Literal[OUTLIER_NAMES]] = Field(  # type: ignore[valid-type]
        list(OUTLIER_NAMES), min_length=1,
        description="Outlier-exposure families (their training split); never a family the ood_detection task "
                    "tests on.")
    epochs: int = Field(5, gt=0, description="Fine-tuning epochs after `train.max_epochs` of ordinary training.")
    weight: float = Field(0.1, ge=0, description="lambda, the energy margin loss's weight.")
    m_in: float = Field(-25.0, description="In-distribution energies are pushed below this.")
    m_out: float = Field(-7.0, description="Outlier energies are pushed above this.")
    ratio: int = Field(1, gt=0, description="Outlier images per in-distribution image in a batch.")

    @model_validator(mode="after")
    def _check(self) -> OutlierExposureSpec:
        if self.m_in >= self.m_out:
            raise ValueError(f"m_in ({self.m_in}) must be below m_out ({self.m_out})")
        return self


class LaplaceSpec(Strict):
    """Last-layer Laplace approximation (Daxberger et al. 2021, with `laplace-torch`): a Gaussian
    posterior over the head's weights around the trained ones, its precision the generalised
    Gauss-Newton Hessian of the training loss plus an isotropic prior; predictions by the probit
    approximation of the softmax over the linearised network's Gaussian logits."""

    hessian: Literal["full"] = Field("full", description="The Hessian's structure: the full generalised "
                                                         "Gauss-Newton matrix of the head's weights.")
    prior: Literal["marglik", "validation"] = Field(
        "marglik", description="How the prior precision is chosen: by the marginal likelihood on the training data, "
                               "or by the validation split's negative log-likelihood (grid search).")


class OODNetSpec(Strict):
    """A small CNN classifier: per entry of `channels` a 3x3 conv (padding 1) -> ReLU -> 2x2 max
    pool, then a hidden layer of `hidden` units (ReLU) and a linear head; dropout before the hidden
    layer and before the head. `members` > 1 makes it a deep ensemble (Lakshminarayanan et al.
    2017): M networks, each initialised from its own draw, trained in one job on the same batches,
    predicting by their mean probability."""

    kind: Literal["ood_cnn"] = "ood_cnn"
    channels: list[int] = Field([32, 64], min_length=1, description="Channels of each conv block.")
    hidden: int = Field(128, gt=0, description="Units of the hidden layer (the features downstream tasks read).")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout probability before the hidden layer and the head.")
    members: int = Field(1, ge=1, le=20, description="Networks of the deep ensemble (1: a single network).")
    mc_samples: int = Field(0, ge=0, description="MC dropout (Gal & Ghahramani 2016): stochastic passes averaged at "
                                                 "test time, dropout on (0: dropout off at test time).")
    outlier_exposure: OutlierExposureSpec | None = None
    laplace: LaplaceSpec | None = None

    def datasets(self) -> tuple[str, ...]:
        """The outlier-exposure families its training reads."""
        return tuple(self.outlier_exposure.families) if self.outlier_exposure is not None else ()

    @model_validator(mode="after")
    def _check(self) -> OODNetSpec:
        if any(c <= 0 for c in self.channels):
            raise ValueError(f"channels must all be > 0 (got {self.channels})")
        if self.mc_samples and self.dropout == 0:
            raise ValueError("mc_samples needs dropout > 0 (with no dropout every pass is the same)")
        if self.laplace is not None and (self.members > 1 or self.mc_samples):
            raise ValueError("laplace is a method of its own: use it with members 1 and mc_samples 0")
        return self

    @property
    def own_score(self) -> str | None:
        """Its own OOD score: the energy after outlier exposure; else the max of its predictive
        probability where that is not a single network's softmax (ensemble, MC dropout, Laplace);
        else none."""
        if self.outlier_exposure is not None:
            return "energy"
        if self.laplace is not None or self.members > 1 or self.mc_samples:
            return "max_predictive"
        return None


class CalibrationSpec(Strict):
    """How well the classifier's confidence matches its accuracy on the test split: expected
    calibration error (equal-width confidence bins), negative log-likelihood, Brier score and
    accuracy, with a reliability diagram; beside the same network after temperature scaling fitted
    on the validation split (Guo et al. 2017)."""

    kind: Literal["calibration"] = "calibration"
    bins: int = Field(15, ge=2, description="Equal-width confidence bins of the ECE and the diagram.")


class OODDetectionSpec(Strict):
    """Telling in-distribution test images from each OOD family by a score: AUROC, AUPR (in-
    distribution as the positive class) and the false-positive rate on OOD images at 95% true-
    positive rate on in-distribution ones (FPR95), for the max softmax probability, the max logit,
    the energy score and the method's own score, with score histograms."""

    kind: Literal["ood_detection"] = "ood_detection"
    families: list[Literal[TEST_NAMES]] = Field(  # type: ignore[valid-type]
        list(FAR_OOD), min_length=1,
        description="OOD test families (their test split), each with inputs of the spec's data's shape.")
    temperature: float = Field(1.0, gt=0, description="T of the energy score T logsumexp(f / T).")
    max_examples: int | None = Field(None, gt=0, description="Score at most this many images of each split "
                                                             "(seeded); default: all.")

    def datasets(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.families))


LONGER = {"seq_fmnist_14": LENGTH_NAMES}
"""Each training dataset of the length_generalization task and its longer versions."""


class LengthGeneralizationSpec(Strict):
    """A sequence classifier's test accuracy on the same data at the length it was trained at and at
    longer ones (sequential Fashion-MNIST trained at 14x14, tested at 16x16, 19x19 and 24x24: 49,
    64, 91 and 144 steps of 4 pixels), with the accuracy against length as a PNG."""

    kind: Literal["length_generalization"] = "length_generalization"
    lengths: list[Literal[LENGTH_NAMES]] = Field(  # type: ignore[valid-type]
        list(LENGTH_NAMES), min_length=1,
        description="The longer versions of the spec's data to score (their test splits).")
    max_examples: int | None = Field(None, gt=0, description="Score at most this many test examples (one seeded "
                                                             "choice, the same at every length); default: all.")

    def datasets(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.lengths))
