"""The spec sections of the standard downstream tasks (those any family's model can feed: probes,
kNN, fine-tuning, the network's own accuracy, forecasting, video prediction...), each run by the
module of the same name in this package. Pure pydantic: the spec union is built from them."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from pipeline.spec.components import Strict


class LinearProbeSpec(Strict):
    """Logistic regression on frozen features, trained to convergence by full-batch L-BFGS."""

    kind: Literal["linear_probe"] = "linear_probe"
    weight_decays: list[float] = Field(
        [1e-3, 1e-4, 1e-5],
        min_length=1,
        description="L2 strengths tried; the one with the best validation accuracy is kept.",
    )
    max_iter: int = Field(150, gt=0, description="L-BFGS iterations at most, per L2 strength.")


class KnnSpec(Strict):
    """Weighted k-nearest-neighbour vote with cosine similarity on frozen features."""

    kind: Literal["knn"] = "knn"
    k: int = Field(20, gt=0)
    temperature: float = Field(0.07, gt=0, description="Votes are weighted by exp(sim / T).")


class EmbeddingSpec(Strict):
    """A t-SNE picture (after PCA to 50 dimensions) of the same test examples under each feature
    set: the trained encoder, the same encoder untrained, the raw input."""

    kind: Literal["embedding"] = "embedding"
    points: int = Field(1500, gt=10, description="Test examples drawn (seeded).")
    perplexity: float = Field(30.0, gt=0)


class NetworkSpec(Strict):
    """The trained network's own test accuracy (supervised families), with its confusion matrix."""

    kind: Literal["network"] = "network"


class FinetuneSpec(Strict):
    """Fine-tuning with few labels: for each fraction, a seeded class-balanced subset of the
    labelled training examples; the pretrained encoder with a linear head, fine-tuned on it,
    against the same network trained from scratch on the same labels with the same schedule,
    and linear probes on the frozen encoders and the raw input. Each network's head starts as
    the probe on its own frozen features (`head_init`). The epoch is chosen on validation
    accuracy; the test split is scored once, at that epoch."""

    kind: Literal["finetune"] = "finetune"
    fractions: list[float] = Field(
        [0.01, 0.1], min_length=1, description="Shares of the labelled training examples used, each in (0, 1].")
    epochs: int = Field(30, gt=0, description="Passes over the labelled subset (at least `min_steps` steps).")
    min_steps: int = Field(300, ge=0, description="At least this many optimiser steps, however few the labels.")
    batch_size: int = Field(64, gt=0)
    lr: float = Field(1e-3, gt=0, description="AdamW learning rate of the head (and of a from-scratch encoder).")
    encoder_lr_ratio: float = Field(
        0.1, gt=0, le=1, description="The pretrained encoder's learning rate, as a share of `lr`.")
    weight_decay: float = Field(1e-4, ge=0)
    augment: bool = Field(True, description="Random shifts of up to 2 px (and flips for images) while training.")
    head_init: Literal["probe", "random"] = Field(
        "probe", description="probe: each network's head starts as the linear probe fitted on its own frozen "
                             "features, and the probe's validation accuracy competes with every epoch's (LP-FT, "
                             "Kumar et al. 2022: a random head's first gradients distort pretrained features); "
                             "random: a freshly initialised head.")
    val_examples: int = Field(2000, gt=0, description="Validation examples that choose the epoch.")

    @model_validator(mode="after")
    def _check(self) -> FinetuneSpec:
        if any(not 0 < f <= 1 for f in self.fractions):
            raise ValueError(f"fractions must each be in (0, 1] (got {self.fractions})")
        return self


class ExportFeaturesSpec(Strict):
    """The trained encoder's features of every example (train, validation and test splits) with
    their labels, written as a dataset (modality `vector`) into artifacts/<spec>/evaluate/dataset/:
    another spec trains on it with `upstream: {data: <this spec>}` and `data.dataset: upstream`
    (e.g. a learner on frozen features)."""

    kind: Literal["export_features"] = "export_features"


class NetworkStatsSpec(Strict):
    """What the network is made of and costs: parameters, synapses used against a dense network
    of the same neurons, time-constant statistics, solver function evaluations (ODE kinds),
    training wall time and inference time per sequence."""

    kind: Literal["network_stats"] = "network_stats"
    timing_repeats: int = Field(5, gt=0, description="Passes over the test split timed; the median is reported.")


class ActivationSparsitySpec(Strict):
    """How sparse the encoder's activity is on the test split, against the same encoder untrained:
    population sparsity (per example, how few units carry its activity; Treves & Rolls' measure as
    Vinje & Gallant normalise it, 0 dense to 1 one unit), lifetime sparsity (per unit, over the
    examples, averaged over the units that are ever active), the share of activations that are
    exactly zero and the share of units never active. Activities are taken as magnitudes (|a|)."""

    kind: Literal["activation_sparsity"] = "activation_sparsity"
    examples: int | None = Field(None, gt=0, description="Score only the first this many test examples (None: all).")


class NoiseRobustnessSpec(Strict):
    """The network's test accuracy as noise grows on its inputs (the values, never a time channel):
    Gaussian noise whose standard deviation is a multiple of the training inputs' own, or (Ahmad &
    Scheinkman 2019) a share of each image's pixels set to one value. A curve PNG, the accuracy at
    the largest level as the headline, and the noise score: correct test classifications summed
    over the levels."""

    kind: Literal["noise_robustness"] = "noise_robustness"
    noise: Literal["gaussian", "pixels"] | None = Field(
        None, description="gaussian (null means it too): levels are standard deviations, as multiples of the "
                          "input's; pixels: levels are the share of each example's values set to `pixel_value`.")
    levels: list[float] = Field([0.0, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0], min_length=2,
                                description="Noise standard deviations (gaussian) or shares of pixels (pixels).")
    pixel_value: float | None = Field(
        None, description="pixels: the value the chosen pixels take, as the model reads them (null: 0.75; images "
                          "are in [0, 1], and 0.75 is Ahmad & Scheinkman's 2 MNIST standard deviations above its "
                          "mean).")
    repeats: int = Field(3, gt=0, description="Noise draws per level (seeded); their accuracies are averaged.")

    @model_validator(mode="after")
    def _check(self) -> NoiseRobustnessSpec:
        if any(level < 0 for level in self.levels):
            raise ValueError(f"levels must be >= 0 (got {self.levels})")
        if self.noise == "pixels" and max(self.levels) > 1:
            raise ValueError(f"noise: pixels takes levels in [0, 1], shares of the pixels (got {self.levels})")
        return self


class ForecastSpec(Strict):
    """Forecasting a series (data with a `target` field): the normalised root-mean-square error
    (RMSE / standard deviation of the series) of one-step predictions on the test windows, and of
    free-running predictions (the model's own outputs fed back) over `horizon` steps after
    `warmup` true steps; against persistence (the last value) and ridge regression on `lags`
    lagged values, computed the same way. Predicted and true trajectories as a PNG."""

    kind: Literal["forecast"] = "forecast"
    warmup: int = Field(100, gt=0, description="True steps the model reads before it runs free.")
    horizon: int = Field(100, gt=0, description="Free-running steps scored.")
    starts: int = Field(10, gt=0, description="Free-running trials, from evenly spaced points of the test series.")
    lags: int = Field(20, gt=0, description="The ridge baseline's lagged inputs.")
    ridge: float = Field(1e-6, ge=0, description="The ridge baseline's L2 strength.")


class _VideoPredictionSpec(Strict):
    """Settings the two video-prediction tasks share."""

    batch_size: int = Field(32, gt=0, description="Sequences the model rolls out at once.")
    strips: int = Field(4, ge=0, description="Test sequences drawn (seeded) for the pictures of true frames, "
                                             "predicted frames and their error.")
    max_sequences: int | None = Field(None, gt=0, description="Score only the first this many sequences of the "
                                                              "test (and validation) split; default: all.")


class NextFrameSpec(_VideoPredictionSpec):
    """Next-frame prediction on videos: each frame from t = 1 on predicted from the true frames
    before it, scored by the MSE per frame (squared error summed over a frame's pixels,
    intensities in [0, 1]), the MSE per pixel, PSNR and SSIM, against the copy-last-frame baseline
    (frame t predicted by frame t - 1) scored the same way. Per-frame curves and frame strips as
    PNGs."""

    kind: Literal["next_frame"] = "next_frame"


class ExtrapolationSpec(_VideoPredictionSpec):
    """Multi-step extrapolation on videos: the model reads `context` true frames, then its own
    predictions; the frames from `context` on are scored as next_frame scores them, against the
    last true frame (frame context - 1) repeated."""

    kind: Literal["extrapolation"] = "extrapolation"
    context: int = Field(10, ge=1, description="True frames the model reads before it runs on its own predictions "
                                               "(below the sequence length).")


class ObjectProbeSpec(Strict):
    """Which objects a video holds, read off the encoder's top representation: its items' classes
    (several per sequence, so multi-label) by a one-vs-rest logistic regression (full-batch L-BFGS,
    L2 chosen on validation) and a cosine kNN vote, each scored by object recall (the share of a
    sequence's classes among its top-scored ones, as many as it has). On the trained encoder, the
    same encoder untrained and the raw frames (the last one, pooled to at most 32x32)."""

    kind: Literal["object_probe"] = "object_probe"
    weight_decays: list[float] = Field(
        [1e-3, 1e-4, 1e-5],
        min_length=1,
        description="L2 strengths tried; the one with the best validation object recall is kept.",
    )
    max_iter: int = Field(150, gt=0, description="L-BFGS iterations at most, per L2 strength.")
    k: int = Field(20, gt=0)
    temperature: float = Field(0.07, gt=0, description="kNN votes are weighted by exp(sim / T).")
    train_subset: int | None = Field(None, gt=0, description="Fit on the first this many training sequences only; "
                                                             "default: all.")
