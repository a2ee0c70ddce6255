"""Continual learners: a network that learns a stream of experiences one after another, and the
remedies for catastrophic forgetting (van de Ven & Tolias 2019; Lomonaco et al. 2021, Avalanche).
The spec, pure pydantic; the scenarios are in `scenario.py`, the network and its training
protocol (one fit per experience) in `module.py`, each strategy in `strategies/`.

The network is `layers` (an MLP on the flattened input, or the encoder of an upstream spec, cut
into its modules) followed by a linear head over every class. `latent_layer` k cuts it in two:
the modules [0, k) are the lower network (frozen by the strategies that replay latents), those
from k on and the head the upper, plastic one.

Scenarios (Hsu et al. 2018; van de Ven & Tolias 2019):
- class_incremental: the classes, in a seeded order, split into experiences; at test time every
  class competes (no task identity);
- task_incremental: the same split, but the experience is known at training and test time: the
  logits are masked to its classes (equivalent to a head per task);
- domain_incremental: every experience holds every class, its inputs under a fixed pixel
  permutation of its own (Permuted MNIST, Goodfellow et al. 2013), seeded.

Every strategy trains `train.max_epochs` epochs per experience, with a fresh optimiser.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from pipeline.plugins import cached as plugins_cached
from pipeline.spec.components import Strict


class ScenarioSpec(Strict):
    """How the dataset becomes a stream of experiences."""

    type: Literal["class_incremental", "task_incremental", "domain_incremental"] = Field(
        "class_incremental",
        description="class_incremental: disjoint classes per experience, no task identity at test; "
                    "task_incremental: the same with the experience known (logits masked to its classes); "
                    "domain_incremental: every class in every experience, inputs permuted per experience.")
    experiences: int = Field(5, ge=2, description="Experiences in the stream (the split scenarios divide the "
                                                  "classes evenly among them).")
    class_order: list[int] | None = Field(
        None, description="split scenarios: the classes in the order they arrive; default: a permutation seeded "
                          "by the spec's seed.")
    permute_first: bool = Field(
        True, description="domain_incremental: permute the first experience's pixels too (as Avalanche's "
                          "PermutedMNIST does); false keeps the original images first.")

    @model_validator(mode="after")
    def _check(self) -> ScenarioSpec:
        if self.class_order is not None and len(set(self.class_order)) != len(self.class_order):
            raise ValueError(f"class_order repeats a class: {self.class_order}")
        return self


class MemorySpec(Strict):
    """A memory budget: in samples or in bytes (exactly one). Raw inputs are stored as the dataset
    holds them (uint8 pixels: one byte each), with the label (one byte; two past 256 classes) and,
    in a domain-incremental stream, the experience (one byte; two past 256)."""

    samples: int | None = Field(None, gt=0, description="Examples kept.")
    bytes: int | None = Field(None, gt=0, description="Bytes of stored examples (codebooks and labels counted).")

    @model_validator(mode="after")
    def _one(self) -> MemorySpec:
        if (self.samples is None) == (self.bytes is None):
            raise ValueError("give the memory budget as `samples` or as `bytes`, exactly one")
        return self


class Naive(Strict):
    """Fine-tuning on each experience in turn (the lower bound). With `contrast: current`, the labels
    trick (Zeno et al. 2018): each step's softmax over the current experience's classes only."""

    name: Literal["naive"] = "naive"
    contrast: Literal["current"] | None = Field(
        None,
        description="The classes each step's cross-entropy contrasts. null: every class (plain fine-tuning). "
                    "current: the current experience's only (the labels trick; class-incremental streams), so "
                    "new examples give the head's rows of other classes no gradient (the layers below still "
                    "change); a prediction is still the argmax over every class.")


class Joint(Strict):
    """One fit on every experience at once (not a continual learner): the upper bound."""

    name: Literal["joint"] = "joint"


class Cumulative(Strict):
    """Experience i trains on experiences 0..i together, from the weights the last one left."""

    name: Literal["cumulative"] = "cumulative"


class EWC(Strict):
    """Online elastic weight consolidation (Kirkpatrick et al. 2017; Schwarz et al. 2018): after each
    experience, the diagonal Fisher information of its data is added to the running one (decayed by
    `decay`) and the weights become the anchor; the loss adds lambda/2 sum F (theta - theta*)^2."""

    name: Literal["ewc"] = "ewc"
    ewc_lambda: float = Field(100.0, ge=0, description="Strength of the penalty.")
    decay: float = Field(1.0, ge=0, le=1, description="Online EWC's gamma: how much of the earlier Fisher stays.")
    fisher_samples: int | None = Field(None, gt=0, description="Examples the Fisher is estimated on; default: all of "
                                                               "the experience.")


class SI(Strict):
    """Synaptic intelligence (Zenke et al. 2017): each weight's contribution to the loss's decrease,
    the path integral of -g * dtheta over the experience, over its squared total change (plus xi),
    summed over experiences, weights the penalty c sum Omega (theta - theta*)^2."""

    name: Literal["si"] = "si"
    si_lambda: float = Field(1.0, ge=0, description="c, the strength of the penalty.")
    xi: float = Field(1e-3, gt=0, description="Damping of the squared total change.")


class LwF(Strict):
    """Learning without forgetting (Li & Hoiem 2016): the network as it was before the experience
    is kept; the loss adds alpha * T^2 * KL between its softened outputs on the classes seen before
    and the network's, on the current data."""

    name: Literal["lwf"] = "lwf"
    alpha: float = Field(1.0, ge=0, description="Weight of the distillation term.")
    temperature: float = Field(2.0, gt=0)


class Replay(Strict):
    """Experience replay (Rolnick et al. 2019; Chaudhry et al. 2019): raw examples kept in a buffer;
    each step trains on a batch of the current experience and a batch drawn from the buffer."""

    name: Literal["replay"] = "replay"
    memory: MemorySpec = MemorySpec(samples=1000)
    policy: Literal["reservoir", "class_balanced"] = Field(
        "class_balanced",
        description="reservoir: every example of the stream kept with equal probability (Vitter's algorithm R); "
                    "class_balanced: equal room per class seen, filled with random examples of each.")
    batch_size: int | None = Field(None, gt=0, description="Examples drawn from the buffer per step; default: "
                                                           "data.batch_size.")


class GDumb(Strict):
    """GDumb (Prabhu et al. 2020): a greedy class-balanced buffer; after each experience the network
    is trained from its initial weights on the buffer alone."""

    name: Literal["gdumb"] = "gdumb"
    memory: MemorySpec = MemorySpec(samples=1000)


class AR1(Strict):
    """Latent replay with AR1* / CWR* (Lomonaco & Maltoni 2017; Pellegrini et al. 2020): the lower
    network (modules below `latent_layer`) trains on the first experience, then stays frozen; its
    activations at the latent layer are what the buffer keeps and replays through the upper
    network. The head is CWR*'s: each experience trains its classes' weights from zero, which are
    then merged into consolidated weights (a running mean weighted by the examples seen)."""

    name: Literal["ar1"] = "ar1"
    memory: MemorySpec = MemorySpec(samples=1000)
    cwr_star: bool = Field(True, description="Consolidate the head with CWR*; false: a plain shared head.")
    batch_size: int | None = Field(None, gt=0, description="Latents drawn from the buffer per step; default: "
                                                           "data.batch_size.")


class REMIND(Strict):
    """REMIND (Hayes et al. 2020): the lower network (below `latent_layer`, an upstream spec's
    trained encoder) frozen; its feature maps compressed by product quantisation (faiss), one code
    of `subquantizers` x `bits` bits per spatial position, the quantiser fitted on the first
    experience; the codes kept in a class-balanced buffer, decoded and replayed through the upper
    network beside each new batch."""

    name: Literal["remind"] = "remind"
    memory: MemorySpec = MemorySpec(bytes=785_000)
    subquantizers: int = Field(1, gt=0, description="M: sub-vectors per position (must divide the channels).")
    bits: int = Field(8, ge=1, le=16, description="Bits per sub-quantiser's code: 2^bits centroids each.")
    quantizer_samples: int = Field(5000, gt=0, description="Examples of the first experience the quantiser is fitted "
                                                           "on.")
    batch_size: int | None = Field(None, gt=0, description="Latents drawn from the buffer per step; default: "
                                                           "data.batch_size.")
    crop_scale: tuple[float, float] | None = Field(
        None,
        description="REMIND's random resized crops of the feature maps a step trains on (new and replayed): each "
                    "a random region of this range of the map's area (aspect 3/4 to 4/3), resized back "
                    "(bilinear) to the map's size; the authors' ImageNet setting is [0.2857, 1] (2/7 to all of "
                    "a 7x7 map). null: none. Maps only: a vector latent is left as it is.")
    mixup_alpha: float = Field(
        0.0, ge=0,
        description="REMIND's mixup of the replayed latents (the authors' ImageNet setting: 0.1): twice the "
                    "replayed batch is drawn and mixed in pairs, lam * a + (1 - lam) * b with lam ~ Beta(alpha, "
                    "alpha) per step, its loss mixed alike; 0: none (which a task-incremental scenario needs: a "
                    "pair may span two tasks' heads).")

    @model_validator(mode="after")
    def _check_crops(self) -> REMIND:
        if self.crop_scale is not None and not 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1:
            raise ValueError(f"crop_scale must be 0 < low <= high <= 1 (got {list(self.crop_scale)})")
        return self


class EnergyBased(Strict):
    """An energy-based classifier (Li, Du & Mordatch 2022): an energy E(x, y) from the features of x
    gated by a learnt embedding of y (multiplied by 1 + the unit-normalised embedding); training
    lowers the true label's energy against the labels of the current experience only (a softmax
    over their negative energies), so new classes do not push old ones up; a prediction is the
    label of lowest energy among every class seen."""

    name: Literal["energy"] = "energy"
    embedding_dim: int | None = Field(None, gt=0, description="Size of the label embedding; default: the feature "
                                                              "size.")
    hidden: int = Field(0, ge=0, description="Units of the energy network's hidden layer; 0: the gated features map "
                                             "linearly to the energy.")


def strategy_label(strategy) -> str:
    """A strategy spec's name as tables and figures show it (`naive (labels trick)`)."""
    return strategy.name + (" (labels trick)" if getattr(strategy, "contrast", None) == "current" else "")


def strategy_union():
    """Every registered strategy's spec (`pipeline.plugins`), discriminated by `name`."""
    from functools import reduce
    from operator import or_

    from pipeline import plugins

    specs = [entry.spec for entry in plugins.strategies().values()]
    return Annotated[reduce(or_, specs), Field(discriminator="name")] if len(specs) > 1 else specs[0]


class DendritesSpec(Strict):
    """Active dendrites (Iyer et al. 2022): each hidden unit of the MLP has `segments` dendritic
    segments, weight vectors over a context; the segment whose response to the context is largest
    in magnitude gates the unit's feed-forward activity through a sigmoid, and k-winners-take-all
    keeps `percent_on` of the layer's units. The context is a prototype: the mean training input of
    the experience being trained; at test time the stored prototype nearest to the input (no task
    identity is given)."""

    segments: int = Field(10, gt=0, description="Dendritic segments per hidden unit.")
    percent_on: float = Field(0.05, gt=0, le=1, description="The share of each hidden layer's units kept active.")
    standardise_context: bool | None = Field(
        None, description="Give the segments each prototype standardised (zero mean, unit variance over its "
                          "entries) rather than as it is: the segments' responses then differ in size between "
                          "contexts from the start (null: false).")


class _Learner(Strict):
    """The checks of a continual learner's spec; its fields are declared by `continual_spec`, whose
    strategy union is built from the registered strategies."""

    @model_validator(mode="after")
    def _check(self) -> _Learner:
        if any(h <= 0 for h in self.hidden):
            raise ValueError(f"hidden must all be > 0 (got {self.hidden})")
        if self.strategy.name in ("ar1", "remind") and self.latent_layer is None:
            raise ValueError(f"strategy {self.strategy.name!r} replays activations at a layer: set `latent_layer`")
        if getattr(self.strategy, "contrast", None) == "current" and self.scenario.type != "class_incremental":
            raise ValueError({
                "task_incremental": "strategy.contrast: current restricts the softmax to the current experience's "
                                    "classes, which a task-incremental stream already does (its logits are masked "
                                    "to the task's classes): leave it out",
                "domain_incremental": "strategy.contrast: current would change nothing in a domain-incremental "
                                      "stream, where every experience holds every class: leave it out",
            }[self.scenario.type])
        if self.dendrites is not None and self.latent_layer is not None:
            raise ValueError("dendrites: the dendritic MLP is not cut into lower and upper parts; leave latent_layer "
                             "out (the latent replay strategies replay at a plain network's layer)")
        if self.freeze_lower and self.latent_layer is None:
            raise ValueError("freeze_lower needs `latent_layer`, the index of the first plastic module")
        if self.strategy.name == "remind" and self.strategy.mixup_alpha and self.scenario.type == "task_incremental":
            raise ValueError("REMIND's mixup pairs replayed examples of any two tasks, whose heads differ in a "
                             "task-incremental scenario: set strategy.mixup_alpha: 0")
        return self

    def refuses_training(self, train) -> str | None:
        """Why the training settings `train` (TrainSpec) would defeat this model, if they would:
        validation within epochs asked for while the per-epoch validation is off; or a strategy that
        leaves the rows of classes outside the current experience without gradient (the labels
        trick's head, the energy model's label embedding), only protected while nothing else moves
        them: Adam's coupled weight decay is their whole gradient then, which Adam normalises to a
        step of about lr each, wiping them out in one experience."""
        if self.validate_every_epoch is False and train.val_check_interval is not None:
            return ("train.val_check_interval asks for validation within each epoch, which validate_every_epoch: "
                    "false turns off: leave one of them out")
        keeps_rows = self.strategy.name == "energy" or getattr(self.strategy, "contrast", None) == "current"
        optimizer = train.optimizer
        if keeps_rows and optimizer.name == "adam" and optimizer.weight_decay > 0:
            what = "the labels trick" if self.strategy.name == "naive" else "the energy model"
            return (f"{what} leaves the rows of the classes outside the current experience without gradient; Adam's "
                    f"coupled weight decay ({optimizer.weight_decay:g}) would then be their whole gradient and move "
                    "them by about lr each step: set train.optimizer.weight_decay: 0, or use adamw (decoupled "
                    "decay)")
        return None

    @property
    def requires_upstream_encoder(self) -> str | None:
        """Why this model cannot start from scratch, if it cannot: REMIND's lower network is a
        trained encoder, frozen from the start (a random one would quantise noise)."""
        if self.strategy.name == "remind":
            return "REMIND freezes its lower network from the start: it must be a trained encoder"
        return None


@plugins_cached
def continual_spec() -> type:
    """The continual learner's spec class over the strategies registered now."""
    strategy_spec = strategy_union()

    class ContinualSpec(_Learner):
        """A continual learner: a network, a scenario and a strategy."""

        kind: Literal["continual"]
        scenario: ScenarioSpec = ScenarioSpec()
        strategy: strategy_spec = Naive()  # type: ignore[valid-type]
        hidden: list[int] = Field(
            [400, 400], min_length=1,
            description="Without an upstream encoder: the MLP's hidden layers (Linear -> ReLU) on the flattened "
                        "input.")
        dendrites: DendritesSpec | None = Field(
            None, description="Without an upstream encoder: the MLP's hidden layers as active-dendrite layers, gated "
                              "by a prototype context inferred from the input (null: plain Linear -> ReLU layers).")
        latent_layer: int | None = Field(
            None, ge=0,
            description="Where the network is cut into lower and upper parts, as an index into its modules (an MLP's: "
                        "one per Linear and per ReLU); the latent replay strategies need it (ar1, remind).")
        freeze_lower: bool = Field(
            False, description="Keep the modules below `latent_layer` frozen throughout (an upstream encoder's lower "
                               "layers, say); ar1 and remind freeze them anyway.")
        validate_every_epoch: bool | None = Field(
            None,
            description="Validate on the current experience's validation examples at each epoch's end during its fit "
                        "(the `val/accuracy` curve, and Lightning's sanity check before each fit). null (as true): "
                        "yes; false: no validation inside the fits, which saves its time. The accuracy matrices on "
                        "validation and test examples after each experience, and the weights, are the same either "
                        "way.")

    ContinualSpec.__qualname__ = "ContinualSpec"  # pickled by name, found through __getattr__
    return ContinualSpec


def __getattr__(name: str):
    # `ContinualSpec` and `StrategySpec` are built from the registry when first asked for (and again
    # after a plugin is registered at run time), so a strategy of another package joins the union
    # whatever the order the plugins were loaded in.
    if name == "ContinualSpec":
        return continual_spec()
    if name == "StrategySpec":
        return strategy_union()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class ContinualTaskSpec(Strict):
    """A continual learner's stream: the accuracy matrix (accuracy on experience j's test examples
    after training on experiences 0..i) as a heatmap, the accuracy over experiences as a curve, and
    from it the average accuracy after the last experience, forgetting, backward and forward
    transfer; the memory the strategy keeps, in samples and bytes. The same figures on validation
    examples. Headline: the average accuracy, beside the network's before any training."""

    kind: Literal["continual"] = "continual"
