"""The meta-learners as one Lightning module: the network adapted per task (a body, the `encoder`
downstream tasks read, and a linear head), its functional loss, and one training step per kind,
each on a meta-batch of episodes vectorised over its tasks (see `algorithms.py`). Kinds whose
meta-gradient is not the gradient of a loss (Reptile's direction, iMAML's implicit hypergradient)
hand it to the spec's optimiser through `as_gradients`, so the optimiser, schedule, clipping,
checkpoints and resume are the ordinary training stage's."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import vmap

from pipeline.models.base import Phase, Trainable
from pipeline.models.meta import algorithms, episodes
from pipeline.spec.components import TrainSpec


class ConvBody(nn.Module):
    """`blocks` x (3x3 convolution, batch norm, ReLU, 2x max pooling while the map is at least 2
    wide), flattened: images [C, H, W] or sequences [C, L]. The meta-learners' batch norm keeps no
    running statistics (each set is normalised on its own); a supervised baseline's does."""

    def __init__(self, input_shape: tuple[int, ...], width: int, blocks: int, running_stats: bool = False):
        super().__init__()
        conv, norm, pool = ((nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d) if len(input_shape) == 3
                            else (nn.Conv1d, nn.BatchNorm1d, nn.MaxPool1d))
        layers, channels, size = [], input_shape[0], min(input_shape[1:])
        for _ in range(blocks):
            layers += [conv(channels, width, 3, padding=1), norm(width, track_running_stats=running_stats), nn.ReLU()]
            if size >= 2:
                layers.append(pool(2))
                size //= 2
            channels = width
        layers.append(nn.Flatten())
        self.layers = nn.Sequential(*layers)
        with torch.no_grad():
            self.out_dim = int(self.layers.eval()(torch.zeros(2, *input_shape)).shape[1])
        self.layers.train()

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.layers(inputs)


class MLPBody(nn.Module):
    """`blocks` hidden layers of `width` ReLU units on the flattened input."""

    def __init__(self, input_shape: tuple[int, ...], width: int, blocks: int, running_stats: bool = False):
        super().__init__()
        layers, size = [nn.Flatten()], math.prod(input_shape)
        for _ in range(blocks):
            layers += [nn.Linear(size, width), nn.ReLU()]
            size = width
        self.layers = nn.Sequential(*layers)
        self.out_dim = size

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.layers(inputs)


def build_body(spec, input_shape: tuple[int, ...], running_stats: bool = False) -> nn.Module:
    body = ConvBody if spec.network.kind == "conv" else MLPBody
    return body(input_shape, spec.network.width, spec.network.blocks, running_stats)


def point_shape(spec, input_shape: tuple[int, ...]) -> tuple[int, ...]:
    """What the network reads: an example, or on functions one point ([C] of the [C, P] field)."""
    return (input_shape[0],) if spec.objective == "regression" else tuple(input_shape)


class MetaLearner(Trainable):
    """One meta-learner per kind (the spec's): `encoder` is the body, `head` maps its features to
    the N classes of an episode (or to the function's value)."""

    def __init__(self, spec, train: TrainSpec, input_shape: tuple[int, ...], num_classes: int):
        super().__init__(build_body(spec, point_shape(spec, input_shape)), train)
        self.spec = spec
        self.regression = spec.objective == "regression"
        outputs = 1 if self.regression else spec.episodes.ways
        self.head = nn.Linear(self.encoder.out_dim, outputs) if spec.adapts else None
        if spec.kind == "meta_sgd":
            # One learned rate per weight (Meta-SGD's alpha), keyed by the weight's name.
            self.inner_lrs = nn.ParameterDict({
                _key(name): nn.Parameter(torch.full_like(p, spec.inner_lr)) for name, p in self.adapted().items()})
        self.pools: episodes.Pools | None = None
        self.normalised = algorithms.has_norms(self)
        self.validation_metric = "val/query_mse" if self.regression else "val/query_accuracy"

    # --- the network as a function of its weights ---

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        features = self.encoder(inputs)
        return features if self.head is None else self.head(features)

    def adapted(self) -> dict[str, torch.Tensor]:
        """The weights an inner loop adapts (and the meta-gradient reaches): the body's and head's."""
        return {name: p for name, p in self.named_parameters() if name.startswith(("encoder.", "head."))}

    def learning_rates(self) -> dict[str, torch.Tensor] | None:
        return {name: self.inner_lrs[_key(name)] for name in self.adapted()} if self.spec.kind == "meta_sgd" else None

    def moving(self) -> tuple[str, ...] | None:
        """ANIL: the inner loop moves the head only; None: everything."""
        return tuple(n for n in self.adapted() if n.startswith("head.")) if self.spec.kind == "anil" else None

    def call(self, params, inputs: torch.Tensor) -> torch.Tensor:
        """The network's output with the given weights. Its batch norm is computed from plain ops
        (`algorithms.CompositeNorms`): the fused kernel's second derivatives are wrong under vmap."""
        return algorithms.functional_forward(self, params, inputs, composite=self.normalised)

    def loss(self, params, inputs, targets) -> torch.Tensor:
        outputs = self.call(params, inputs)
        return F.mse_loss(outputs, targets) if self.regression else F.cross_entropy(outputs, targets)

    def score(self, params, inputs, targets) -> torch.Tensor:
        """Query accuracy, or squared error on functions."""
        outputs = self.call(params, inputs)
        return F.mse_loss(outputs, targets) if self.regression else algorithms.accuracy(outputs, targets)

    # --- scoring episodes (meta-validation here, the few_shot task downstream) ---

    def evaluate(self, batch: episodes.Episode, steps: int | None = None) -> torch.Tensor:
        """Each task's query score [T] after `steps` inner steps on its support set (default: the
        spec's eval_inner_steps); prototypes for protonet. No meta-gradient is kept."""
        params = {n: p.detach() for n, p in self.adapted().items()}
        with torch.enable_grad(), torch.inference_mode(False):
            if not self.spec.adapts:
                return self._prototype_scores(params, batch).detach()
            steps = self.spec.eval_inner_steps if steps is None else steps
            lrs = self.learning_rates()
            lrs = {n: lr.detach() for n, lr in lrs.items()} if lrs is not None else None
            return algorithms.adapted_losses(
                self.inner_loss(params), params, batch["support_x"], batch["support_y"], batch["query_x"],
                batch["query_y"],
                steps=steps, lr=self.spec.inner_lr, first_order=True, lrs=lrs, names=self.moving(),
                query_fn=self.score, vectorise=self.spec.vectorise).detach()

    def inner_loss(self, start):
        """The loss a task's inner loop descends when it is scored: the support loss, plus iMAML's
        proximal term lam/2 |phi - start|^2 (the problem it was meta-trained to start)."""
        return algorithms.proximal(self.loss, start, self.spec.lam) if self.spec.kind == "imaml" else self.loss

    def _prototype_logits(self, params, batch: episodes.Episode) -> torch.Tensor:
        """Support and query sets embedded together, as one batch (normalised on the episode's
        statistics, as the prototypical networks' reference code does)."""
        ways = int(batch["support_y"].max()) + 1

        def one(support_x, support_y, query_x):
            embedded = self.call(params, torch.cat([support_x, query_x]))
            support, query = embedded[:len(support_x)], embedded[len(support_x):]
            return algorithms.prototype_logits(support, support_y, query, ways)

        tasks = (batch["support_x"], batch["support_y"], batch["query_x"])
        if self.spec.vectorise:
            return vmap(one)(*tasks)
        return torch.stack([one(*task) for task in zip(*tasks, strict=True)])

    def _prototype_scores(self, params, batch: episodes.Episode) -> torch.Tensor:
        logits = self._prototype_logits(params, batch)
        return (logits.argmax(dim=-1) == batch["query_y"]).float().mean(dim=-1)

    # --- training ---

    def phases(self, spec, splits) -> list[Phase]:
        e = self.spec.episodes
        self.pools = episodes.pools(splits, e.val_fraction, e.ways, self.regression)
        data = episodes.EpisodeDataModule(self.pools.train, spec.seed, e.ways, e.shots, e.queries, e.meta_batch,
                                          e.episodes_per_epoch)
        return [Phase("fit", data, spec.train.max_epochs)]

    def training_step(self, batch: episodes.Episode, batch_idx: int) -> torch.Tensor:
        kind, tasks = self.spec.kind, len(batch["support_x"])
        sx, sy, qx, qy = batch["support_x"], batch["support_y"], batch["query_x"], batch["query_y"]
        if kind == "protonet":
            logits = self._prototype_logits(self.adapted(), batch)
            loss = F.cross_entropy(logits.flatten(0, 1), qy.flatten())
            accuracy = (logits.argmax(dim=-1) == qy).float().mean()
            self.log("train/query_accuracy", accuracy, on_step=False, on_epoch=True, batch_size=tasks)
        elif kind == "reptile":
            inputs, targets = torch.cat([sx, qx], dim=1), torch.cat([sy, qy], dim=1)
            params = {n: p.detach() for n, p in self.adapted().items()}
            # Reptile has no query loss: its curve is the tasks' loss before adaptation.
            loss = vmap(self.loss, in_dims=(None, 0, 0))(params, inputs, targets).mean()
            direction = algorithms.reptile_direction(self.loss, params, inputs, targets, steps=self.spec.inner_steps,
                                                     lr=self.spec.inner_lr, batch_size=self.spec.inner_batch,
                                                     vectorise=self.spec.vectorise)
            self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=tasks)
            return self.as_gradients(direction)
        elif kind == "imaml":
            params = {n: p.detach() for n, p in self.adapted().items()}
            hypergradient, losses = algorithms.imaml_hypergradient(
                self.loss, params, sx, sy, qx, qy, steps=self.spec.inner_steps, lr=self.spec.inner_lr,
                lam=self.spec.lam, cg_steps=self.spec.cg_steps, vectorise=self.spec.vectorise)
            self.log("train/loss", losses.mean(), on_step=True, on_epoch=True, prog_bar=True, batch_size=tasks)
            return self.as_gradients(hypergradient)
        else:
            losses = algorithms.adapted_losses(
                self.loss, self.adapted(), sx, sy, qx, qy, steps=self.spec.inner_steps, lr=self.spec.inner_lr,
                first_order=getattr(self.spec, "first_order", False), lrs=self.learning_rates(), names=self.moving(),
                vectorise=self.spec.vectorise)
            loss = losses.mean()
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=tasks)
        return loss

    def on_train_epoch_end(self) -> None:
        """Meta-validation: the query score of fixed episodes of the meta-validation classes."""
        if self.pools is None:
            return
        e = self.spec.episodes
        scores = []
        for start in range(0, e.val_episodes, e.meta_batch):
            indices = range(start, min(start + e.meta_batch, e.val_episodes))
            batch = episodes.draw(self.pools.val, 0, "val", indices, e.ways, e.shots, e.queries)
            scores.append(self.evaluate({k: v.to(self.device) for k, v in batch.items()}))
        self.log(self.validation_metric, torch.cat(scores).mean(), prog_bar=True)

    def plot_groups(self) -> dict[str, tuple[str, list[str]]]:
        return {"training_curves": ("meta-training", ["train/loss_epoch", self.validation_metric])}


def _key(name: str) -> str:
    return name.replace(".", "__")
