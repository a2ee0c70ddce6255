"""Meta-learning: networks that learn to learn a new task from a few examples. The specs, pure
pydantic; the algorithms are pure functions on `torch.func` in `algorithms.py`, the episodes
(support and query sets of classes meta-training never sees) in `episodes.py`, the Lightning
module in `module.py` and the downstream task `few_shot` in `few_shot.py`.

Kinds:
- `maml` (Finn et al. 2017): the initial weights from which `inner_steps` gradient steps on a
  task's support set fit its query set; second order, or first order (FOMAML) with
  `first_order: true`;
- `anil` (Raghu et al. 2020): MAML whose inner loop moves the head only;
- `meta_sgd` (Li et al. 2017): MAML with a learned inner learning rate for every weight;
- `reptile` (Nichol et al. 2018): the weights move towards those that SGD on each task reaches;
- `imaml` (Rajeswaran et al. 2019): the inner loop solves a proximal problem and the meta-gradient
  comes from the implicit function theorem (conjugate gradient on Hessian-vector products), so
  its memory does not grow with the inner steps;
- `protonet` (Snell et al. 2017): no inner loop: a query is classified by its distance to each
  class's mean embedding of the support set.

Normalisation is per set: the networks' batch norm keeps no running statistics, so each task's
support set and query set are normalised on their own statistics and no statistics are shared
between the tasks of a meta-batch (the query set's are transductive, as in MAML's reference code).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from pipeline.spec.components import Strict


class EpisodeSpec(Strict):
    """How tasks are drawn: N-way K-shot classification episodes from the meta-training classes
    (or, on a dataset of functions, K points of one function to fit and `queries` to score)."""

    ways: int = Field(5, ge=2, description="Classes per episode (N), labelled 0..N-1 in a random order per episode.")
    shots: int = Field(1, gt=0, description="Support examples per class (K); on functions, support points.")
    queries: int = Field(15, gt=0, description="Query examples per class scored after adaptation; on functions, "
                                                "query points.")
    meta_batch: int = Field(16, gt=0, description="Tasks per meta-step, vectorised with torch.func.vmap.")
    episodes_per_epoch: int = Field(
        3200, gt=0, description="Training episodes per epoch (meta-steps per epoch = this / meta_batch).")
    val_fraction: float = Field(
        0.2, gt=0, lt=1, description="Share of the meta-training side's class groups (or functions) held out as "
                                     "meta-validation classes, by a fixed permutation (the same for every seed): "
                                     "what the validation curve and every setting are chosen on.")
    val_episodes: int = Field(200, gt=0, description="Meta-validation episodes scored at each epoch's end (fixed).")


class NetworkSpec(Strict):
    """The network adapted per task: `conv` blocks of 3x3 (or 3-wide on sequences) convolution,
    batch norm without running statistics, ReLU and 2x max pooling (the Conv-4 of the few-shot
    literature with `blocks: 4`), then a linear head; `mlp` for functions and vectors."""

    kind: Literal["conv", "mlp"] = "conv"
    width: int = Field(32, gt=0, description="Channels of every conv block, or units of every hidden layer.")
    blocks: int = Field(4, gt=0, description="Conv blocks, or hidden layers.")


class _MetaSpec(Strict):
    episodes: EpisodeSpec = EpisodeSpec()
    network: NetworkSpec = NetworkSpec()
    vectorise: bool = Field(
        True, description="Run the tasks of a meta-batch as one torch.func.vmap (true) or one after another (false): "
                          "the same numbers; vmap wins where a task's work is small (bench/meta_vmap.py), a loop "
                          "where its activations outgrow the cache.")
    objective: Literal["classification", "regression"] = Field(
        "classification", description="classification: N-way episodes of a labelled dataset (cross-entropy); "
                                      "regression: functions (a dataset with a `target` at each point), squared error.")

    def check_input(self, shape: tuple[int, ...]) -> None:
        if self.network.kind == "conv" and len(shape) not in (2, 3):
            raise ValueError(f"network kind conv takes sequences [C, L] or images [C, H, W], not {list(shape)}")
        if self.objective == "regression" and self.network.kind != "mlp":
            raise ValueError("regression on functions reads one point at a time: set network.kind: mlp")

    @property
    def adapts(self) -> bool:
        """Whether the kind fits each task by gradient steps (protonet does not)."""
        return True


class _InnerLoop(_MetaSpec):
    inner_steps: int = Field(5, ge=1, description="Gradient steps on a task's support set in meta-training.")
    inner_lr: float = Field(0.4, gt=0, description="Learning rate of the inner loop (Meta-SGD: its initial value).")
    eval_inner_steps: int = Field(
        10, ge=0, description="Gradient steps on the support set when a task is scored (meta-validation, few_shot).")


class MAMLSpec(_InnerLoop):
    """MAML (Finn et al. 2017): initial weights learned so that `inner_steps` gradient steps on a
    task's support set fit its query set; the meta-gradient differentiates through the inner loop
    (second order), or drops the second-order term with `first_order: true` (FOMAML)."""

    kind: Literal["maml"]
    first_order: bool = Field(False, description="FOMAML: inner gradients treated as constants.")


class ANILSpec(_InnerLoop):
    """ANIL (Raghu et al. 2020): MAML with an inner loop on the head only (the body's features are
    reused as they are, and learned by the outer loop)."""

    kind: Literal["anil"]
    first_order: bool = Field(False, description="Inner gradients treated as constants.")


class MetaSGDSpec(_InnerLoop):
    """Meta-SGD (Li et al. 2017): MAML with a learned inner learning rate per weight (initialised
    to `inner_lr`), meta-trained with the weights."""

    kind: Literal["meta_sgd"]


class ReptileSpec(_InnerLoop):
    """Reptile (Nichol et al. 2018): `inner_steps` SGD steps on each task's examples (support and
    query together), then the outer optimiser moves the weights towards the mean adapted weights
    (train.optimizer: sgd with lr 1 and no momentum is Reptile's own update with step size 1; a
    smaller lr, or Adam, is its usual variant)."""

    kind: Literal["reptile"]
    inner_batch: int | None = Field(None, gt=0, description="Examples per inner step, cycling through the task's; "
                                                            "default: all of them each step.")


class IMAMLSpec(_InnerLoop):
    """iMAML (Rajeswaran et al. 2019): the inner loop minimises the support loss plus
    lam/2 |phi - theta|^2 without keeping its graph, and the meta-gradient (I + H/lam)^-1 g (g the
    query gradient at phi, H the support Hessian) is solved by conjugate gradient on
    Hessian-vector products: memory independent of the inner steps."""

    kind: Literal["imaml"]
    lam: float = Field(1.0, gt=0, description="Proximal regulariser lambda: larger keeps phi nearer the initial "
                                              "weights.")
    cg_steps: int = Field(5, gt=0, description="Conjugate-gradient iterations for the hypergradient.")


class ProtoNetSpec(_MetaSpec):
    """Prototypical networks (Snell et al. 2017): an embedding trained on episodes; a query's logits
    are minus its squared distance to each class's mean support embedding. No inner loop."""

    kind: Literal["protonet"]

    @property
    def adapts(self) -> bool:
        return False

    @model_validator(mode="after")
    def _classifies(self) -> ProtoNetSpec:
        if self.objective != "classification":
            raise ValueError("protonet classifies (prototypes are class means): objective must be classification")
        return self


KINDS = {"maml": MAMLSpec, "anil": ANILSpec, "meta_sgd": MetaSGDSpec, "reptile": ReptileSpec, "imaml": IMAMLSpec,
         "protonet": ProtoNetSpec}


class FewShotSpec(Strict):
    """Few-shot accuracy on meta-test classes (never seen in meta-training): N-way episodes at each
    of `shots`, scored on `episodes` fixed episodes with a 95% confidence interval (1.96 standard
    errors), and against the number of inner steps. Baselines on the same episodes: the network
    trained from scratch on each support set, nearest centroid on the raw input, and a linear head
    fitted on the features of the same body trained supervised on all meta-training classes ("a good
    embedding", Tian et al. 2020). On functions: the squared error after 1 and `steps` steps beside
    a network trained on all the training functions at once, then fine-tuned the same way."""

    kind: Literal["few_shot"] = "few_shot"
    shots: list[int] = Field([1, 5], min_length=1, description="Shots scored (the first is the headline's).")
    episodes: int = Field(600, gt=0, description="Meta-test episodes per shot count (meta-validation: at most 100).")
    steps: list[int] = Field([0, 1, 2, 5, 10], min_length=1,
                             description="Inner steps of the accuracy-against-steps curve.")
    scratch_steps: int = Field(50, gt=0, description="Adam steps of the from-scratch baseline on a support set.")
    scratch_lrs: list[float] = Field([1e-3, 3e-3, 1e-2], min_length=1,
                                     description="Learning rates of the from-scratch baseline (Adam), chosen on "
                                                 "meta-validation episodes; on functions, those tried (with the "
                                                 "meta-learner's inner_lr) for the pretrained network's SGD "
                                                 "fine-tuning, chosen on meta-validation functions per step count.")
    embedding_epochs: int = Field(10, gt=0, description="Epochs of the supervised body on the meta-training classes "
                                                        "(the good-embedding baseline; on functions, the network "
                                                        "pretrained on all training functions).")
    seed: int = Field(0, ge=0, description="Seed of the fixed episodes (the same for every model and seed).")
