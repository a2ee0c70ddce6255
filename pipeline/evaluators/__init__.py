"""Downstream tasks: what a trained model is for. One module per task; this module holds their
spec sections and the registry, and imports only pydantic (the spec union is built from it).

A task declares what it needs of the model (`needs`: an encoder, a classifier, spikes); a spec
whose model does not provide it is rejected at validation. Its module has
`run(task_spec, context) -> TaskResult`: metrics, pictures and one headline figure with its
baselines, all computed in the same run (see `pipeline.evaluators.context`).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, model_validator

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


class SpikeStatsSpec(Strict):
    """Spikes, firing rates, sparsity, synaptic operations against the MACs of the same-shaped
    non-spiking network, the energy estimate, a spike raster and membrane traces."""

    kind: Literal["spike_stats"] = "spike_stats"


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


class NoiseRobustnessSpec(Strict):
    """The network's test accuracy as Gaussian noise is added to its inputs (the values, never a
    time channel), the noise's standard deviation a multiple of the training inputs' own: a curve
    PNG, and the accuracy at the largest level as the headline."""

    kind: Literal["noise_robustness"] = "noise_robustness"
    levels: list[float] = Field([0.0, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0], min_length=2,
                                description="Noise standard deviations, as multiples of the input's.")
    repeats: int = Field(3, gt=0, description="Noise draws per level (seeded); their accuracies are averaged.")

    @model_validator(mode="after")
    def _check(self) -> NoiseRobustnessSpec:
        if any(level < 0 for level in self.levels):
            raise ValueError(f"levels must be >= 0 (got {self.levels})")
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


class ContinualTaskSpec(Strict):
    """A continual learner's stream: the accuracy matrix (accuracy on experience j's test examples
    after training on experiences 0..i) as a heatmap, the accuracy over experiences as a curve, and
    from it the average accuracy after the last experience, forgetting, backward and forward
    transfer; the memory the strategy keeps, in samples and bytes. The same figures on validation
    examples. Headline: the average accuracy, beside the network's before any training."""

    kind: Literal["continual"] = "continual"


class RetrievalSpec(Strict):
    """Caption-to-image and image-to-caption retrieval on held-out scenes by a token-image matcher
    (a caption's score for an image: the mean relevance of its tokens): recall@k, the share of
    queries whose own image (caption) ranks in the top k of a gallery of `gallery` test scenes;
    against the untrained matcher and chance (k / gallery). Pictures: captions with the images
    they retrieve."""

    kind: Literal["retrieval"] = "retrieval"
    gallery: int = Field(1000, gt=1, description="Test (and validation) scenes ranked against each other.")
    ks: list[int] = Field([1, 5], min_length=1, description="The k of each recall@k.")
    examples: int = Field(6, ge=0, description="Test captions drawn (seeded) for the picture of retrieved images.")

    def datasets(self) -> tuple[str, ...]:
        return ("wordnet_corpus",)  # its tokenizer, to print the captions of the picture

    @model_validator(mode="after")
    def _check(self) -> RetrievalSpec:
        if any(k < 1 or k > self.gallery for k in self.ks):
            raise ValueError(f"each k must be in [1, gallery={self.gallery}] (got {self.ks})")
        return self


class VokenizeSpec(Strict):
    """Vokenization (Tan & Bansal 2020): every token of a text corpus, in its context, gets its
    voken, the image of a fixed pool that the matcher scores highest for it (exact inner-product
    search, faiss); a token of a type the matcher never read in its training captions gets none
    (its embedding was never trained). The pool: `pool` scenes of this spec's training split (seeded). Writes the
    vokenized corpus as a dataset (modality `text`: `input` token ids, `vokens` the voken of each
    token, IGNORE at padding and special tokens; its classes are the pool's images, named by their
    captions) into artifacts/<spec>/evaluate/dataset/, for a language model with
    `upstream: {data: <this spec>}`. Reports the share of the pool used as vokens, and how often a
    clothing word's voken shows an item of the class it names (against the untrained matcher and
    chance)."""

    kind: Literal["vokenize"] = "vokenize"
    corpus: Literal["wordnet_corpus"] = Field("wordnet_corpus", description="The text corpus vokenized.")
    pool: int = Field(1000, gt=1, description="Training scenes that make the voken pool.")
    max_sentences: int | None = Field(
        None, gt=0, description="Vokenize only the first this many training sentences of the corpus (all of its "
                                "test sentences); default: all.")
    batch_size: int = Field(512, gt=0, description="Sentences encoded at once.")

    def datasets(self) -> tuple[str, ...]:
        return (self.corpus,)


class TextProbeSpec(Strict):
    """A language model's sentence features (the mean of its last layer over the tokens) probed
    by logistic regression on a labelled text task (L2 chosen on validation): WordNet noun
    supersenses of glosses (26 classes), or grounded facts (whether a sentence comparing two
    clothing items' brightness or size is true, by Fashion-MNIST's images; each test sentence names
    a class no training sentence names, so the probe must read that class's brightness or size off
    the features). Against the same network untrained and the majority class."""

    kind: Literal["text_probe"] = "text_probe"
    dataset: Literal["wordnet_supersense", "grounded_facts"] = Field(description="The labelled text task.")
    weight_decays: list[float] = Field([1e-2, 1e-3, 1e-4], min_length=1,
                                       description="L2 strengths tried; the best on validation is kept.")
    max_iter: int = Field(200, gt=0, description="L-BFGS iterations at most, per L2 strength.")
    train_subset: int | None = Field(None, gt=0, description="Fit on only this many training sentences (seeded); "
                                                             "default: all.")
    val_fraction: float = Field(0.1, gt=0, lt=1, description="Training sentences held out to choose the L2.")

    def datasets(self) -> tuple[str, ...]:
        return (self.dataset,)


DownstreamSpec = Annotated[
    LinearProbeSpec | KnnSpec | EmbeddingSpec | NetworkSpec | SpikeStatsSpec | FinetuneSpec | ExportFeaturesSpec
    | NetworkStatsSpec | NoiseRobustnessSpec | ForecastSpec | NextFrameSpec | ExtrapolationSpec | ObjectProbeSpec
    | ContinualTaskSpec | RetrievalSpec | VokenizeSpec | TextProbeSpec,
    Field(discriminator="kind"),
]


def task_datasets(task: BaseModel) -> tuple[str, ...]:
    """The registered datasets a task reads besides its spec's own (a corpus to vokenize, a text
    task to probe): fetched with the spec's, and dependencies of its DVC stages."""
    datasets = getattr(task, "datasets", None)
    return datasets() if datasets is not None else ()


@dataclass(frozen=True)
class EvaluatorEntry:
    spec: type[BaseModel]
    module: str
    """`package.module` with `run(task_spec, context) -> TaskResult`."""
    needs: frozenset[str]
    """What the model must provide: "encoder" (features), "classifier" (its own predictions),
    "spikes" (a spiking pass with per-layer counts), "video_predictor" (`rollout`: its predictions
    of each frame from the frames before it), "continual" (the accuracy matrices of a stream),
    "matcher" (token and image embeddings in one space), "language_model" (sentence features of
    token ids)."""
    summary: str
    writes: str | None = None
    """The modality of the dataset it writes into artifacts/<spec>/evaluate/dataset/ for other
    specs to train on (`upstream: {data: <spec>}`), if it writes one."""
    data: Literal["labelled", "series", "video", "image-text", "any"] = "labelled"
    """The data it scores: labelled (class labels), series (a `target` field to forecast), video
    (frame sequences [T, C, H, W], with their items' classes as `labels`), image-text (images with
    their captions' token ids as `tokens`), any (it reads a dataset of its own, or none)."""

    def load(self) -> Any:
        return importlib.import_module(self.module).run


EVALUATORS: dict[str, EvaluatorEntry] = {
    "linear_probe": EvaluatorEntry(LinearProbeSpec, "pipeline.evaluators.linear_probe", frozenset({"encoder"}),
                                   "logistic regression on frozen features, against raw input and untrained"),
    "knn": EvaluatorEntry(KnnSpec, "pipeline.evaluators.knn", frozenset({"encoder"}),
                          "cosine kNN vote on frozen features, against raw input and untrained"),
    "embedding": EvaluatorEntry(EmbeddingSpec, "pipeline.evaluators.embedding", frozenset({"encoder"}),
                                "t-SNE picture of the test features"),
    "network": EvaluatorEntry(NetworkSpec, "pipeline.evaluators.network", frozenset({"classifier"}),
                              "the trained network's own test accuracy and confusion matrix"),
    "spike_stats": EvaluatorEntry(SpikeStatsSpec, "pipeline.evaluators.spike_stats", frozenset({"spikes"}),
                                  "spikes, sparsity, synaptic operations, energy, raster, membrane traces"),
    "finetune": EvaluatorEntry(FinetuneSpec, "pipeline.evaluators.finetune", frozenset({"encoder"}),
                               "fine-tuning with few labels, against the same network from scratch"),
    "export_features": EvaluatorEntry(ExportFeaturesSpec, "pipeline.evaluators.export_features",
                                      frozenset({"encoder"}),
                                      "writes the encoder's features as a dataset other specs train on",
                                      writes="vector"),
    "network_stats": EvaluatorEntry(NetworkStatsSpec, "pipeline.evaluators.network_stats",
                                    frozenset({"network_stats"}),
                                    "parameters, synapses used vs dense, time constants, solver steps, inference time",
                                    data="any"),
    "noise_robustness": EvaluatorEntry(NoiseRobustnessSpec, "pipeline.evaluators.noise_robustness",
                                       frozenset({"classifier"}), "the network's accuracy as input noise grows"),
    "forecast": EvaluatorEntry(ForecastSpec, "pipeline.evaluators.forecast", frozenset({"forecaster"}),
                               "one-step and free-running NRMSE against persistence and lagged ridge",
                               data="series"),
    "next_frame": EvaluatorEntry(NextFrameSpec, "pipeline.evaluators.next_frame", frozenset({"video_predictor"}),
                                 "next-frame MSE, PSNR, SSIM against copying the last frame", data="video"),
    "extrapolation": EvaluatorEntry(ExtrapolationSpec, "pipeline.evaluators.extrapolation",
                                    frozenset({"video_predictor"}),
                                    "frames predicted from the model's own predictions, against the last true frame",
                                    data="video"),
    "object_probe": EvaluatorEntry(ObjectProbeSpec, "pipeline.evaluators.object_probe", frozenset({"encoder"}),
                                   "multi-label probe and kNN of a video's object classes, against raw frames and "
                                   "untrained", data="video"),
    "continual": EvaluatorEntry(ContinualTaskSpec, "pipeline.evaluators.continual", frozenset({"continual"}),
                                "accuracy matrix, average accuracy, forgetting, transfer and memory of a continual "
                                "learner"),
    "retrieval": EvaluatorEntry(RetrievalSpec, "pipeline.evaluators.retrieval", frozenset({"matcher"}),
                                "caption-image retrieval recall@k on held-out scenes, against untrained and chance",
                                data="image-text"),
    "vokenize": EvaluatorEntry(VokenizeSpec, "pipeline.evaluators.vokenize", frozenset({"matcher"}),
                               "writes a text corpus with each token's voken (its best-matching image) as a dataset",
                               writes="text", data="image-text"),
    "text_probe": EvaluatorEntry(TextProbeSpec, "pipeline.evaluators.text_probe", frozenset({"language_model"}),
                                 "logistic regression on a language model's sentence features for a text task, "
                                 "against untrained and the majority class", data="any"),
}

FEATURE_TASKS = ("linear_probe", "knn", "embedding")


def default_downstream(provides: frozenset[str], data: str = "labelled") -> list[dict]:
    """The tasks a spec runs when it lists none: every default task its model can feed on its
    data ("labelled", "series" or "video"), in an order that keeps evaluation deterministic
    (feature tasks, then the network's own pass)."""
    if "continual" in provides:
        # A continual learner is read by its stream; probes of its features run when listed.
        return [{"kind": "continual"}]
    if "language_model" in provides:
        # Its features are of token ids: probed on text tasks, not on its own (unlabelled) corpus.
        return [{"kind": "text_probe", "dataset": "wordnet_supersense"},
                {"kind": "text_probe", "dataset": "grounded_facts"}]
    order = ("linear_probe", "knn", "network", "spike_stats", "forecast", "next_frame", "extrapolation",
             "object_probe", "retrieval", "vokenize", "network_stats", "embedding")
    return [{"kind": kind} for kind in order
            if EVALUATORS[kind].needs <= provides and EVALUATORS[kind].data in (data, "any")]
