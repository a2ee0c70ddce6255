"""Episodes: what a meta-learner trains and is scored on. Any labelled dataset whose test split
holds classes its training split does not can serve them:

- classes are split three ways: meta-test classes are the test split's; the training side's class
  groups (names "<group>@<variant>" form one group, e.g. the four rotations of one garment; other
  names are their own group) are split into meta-train and meta-validation groups by a fixed
  permutation, the same for every seed, so that settings chosen on meta-validation classes are
  chosen on the same classes whatever the seed;
- an N-way K-shot episode draws N classes of one set and K support plus Q query examples of each,
  labelled 0..N-1 in the order drawn (a fresh permutation of labels per episode);
- episode k of a stream is drawn from its own generator, seeded by (seed, stream, k): the same
  episodes whatever ran before, so a resumed training sees the episodes an uninterrupted one does,
  and every model is scored on the same meta-test episodes.

A dataset of functions (each example one function sampled at points: `input` the points, `target`
the values) serves regression tasks: K support points and Q query points of one function. Its
training functions are split into meta-train and meta-validation ones the same fixed way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from pipeline.data.datamodule import Splits, model_input
from pipeline.errors import PipelineError

GROUP_MARK = "@"
SPLIT_SEED = 0
"""The permutation that picks meta-validation groups: fixed, not the spec's seed."""
STREAMS = {"train": 0, "val": 1, "test": 2}

Episode = dict[str, torch.Tensor]
"""support_x [n_s, ...], support_y [n_s(, ...)], query_x [n_q, ...], query_y [n_q(, ...)]; batched: a
leading task axis."""


def group_of(name: str) -> str:
    return name.split(GROUP_MARK, 1)[0]


@dataclass(frozen=True)
class ClassSplit:
    train: tuple[int, ...]
    val: tuple[int, ...]
    test: tuple[int, ...]


def split_classes(classes: tuple[str, ...], train_labels: np.ndarray, test_labels: np.ndarray,
                  val_fraction: float, ways: int) -> ClassSplit:
    """Meta-train, meta-validation and meta-test classes (see the module docstring); a dataset
    whose splits share classes, or with too few classes for `ways`, is refused."""
    train_side = sorted(set(np.unique(train_labels).tolist()))
    test_side = sorted(set(np.unique(test_labels).tolist()))
    shared = set(train_side) & set(test_side)
    if shared:
        names = ", ".join(classes[c] for c in sorted(shared)[:5])
        raise PipelineError(f"meta-learning needs a dataset whose test classes the training split never holds, but "
                            f"{len(shared)} classes are in both ({names}...): use a few-shot dataset "
                            "(`pipeline datasets` lists them: mnist1d_fewshot, fmnist_fewshot)")
    groups = sorted({group_of(classes[c]) for c in train_side})
    order = np.random.default_rng(SPLIT_SEED).permutation(len(groups))
    n_val = max(1, int(round(val_fraction * len(groups))))
    val_groups = {groups[i] for i in order[:n_val]}
    val = tuple(c for c in train_side if group_of(classes[c]) in val_groups)
    train = tuple(c for c in train_side if group_of(classes[c]) not in val_groups)
    for name, chosen in (("meta-train", train), ("meta-validation", val), ("meta-test", test_side)):
        if len(chosen) < ways:
            raise PipelineError(f"{ways}-way episodes need {ways} {name} classes, the dataset gives {len(chosen)}: "
                                "lower episodes.ways, or change episodes.val_fraction")
    return ClassSplit(tuple(train), val, tuple(test_side))


class ClassPool:
    """The examples of some classes, grouped by class, that N-way episodes are drawn from."""

    def __init__(self, inputs: torch.Tensor, labels: torch.Tensor, classes: tuple[int, ...]):
        self.inputs = inputs
        labels = labels.numpy()
        self.classes = classes
        self.members = [np.flatnonzero(labels == c) for c in classes]

    def episode(self, rng: np.random.Generator, ways: int, shots: int, queries: int) -> Episode:
        fewest = min(len(m) for m in self.members)
        if shots + queries > fewest:
            raise PipelineError(f"an episode takes {shots} support and {queries} query examples of a class, but "
                                f"a class here has only {fewest}: lower episodes.queries or the shots")
        chosen = rng.choice(len(self.members), ways, replace=False)
        picks = [rng.choice(self.members[c], shots + queries, replace=False) for c in chosen]
        support = np.concatenate([p[:shots] for p in picks])
        query = np.concatenate([p[shots:] for p in picks])
        labels = torch.arange(ways)
        return {"support_x": model_input(self.inputs[support]), "support_y": labels.repeat_interleave(shots),
                "query_x": model_input(self.inputs[query]), "query_y": labels.repeat_interleave(queries),
                "classes": torch.as_tensor(np.asarray(self.classes)[chosen])}


class FunctionPool:
    """Functions sampled at points (`input` [N, C, P], `target` [N, C, P]); a task is one function:
    K support points and Q query points of it, each point a [C] vector."""

    def __init__(self, inputs: torch.Tensor, targets: torch.Tensor, functions: np.ndarray):
        self.inputs, self.targets = inputs, targets
        self.functions = functions

    def episode(self, rng: np.random.Generator, ways: int, shots: int, queries: int) -> Episode:
        points = self.inputs.shape[-1]
        if shots + queries > points:
            raise PipelineError(f"a task takes {shots} support and {queries} query points, but a function here is "
                                f"sampled at {points}: lower episodes.queries or the shots")
        function = int(self.functions[rng.integers(len(self.functions))])
        chosen = torch.as_tensor(rng.choice(points, shots + queries, replace=False))
        x = model_input(self.inputs[function][:, chosen]).T  # [K + Q, C]
        y = model_input(self.targets[function][:, chosen]).T
        return {"support_x": x[:shots], "support_y": y[:shots], "query_x": x[shots:], "query_y": y[shots:],
                "function": torch.tensor(function)}


@dataclass(frozen=True)
class Pools:
    train: ClassPool | FunctionPool
    val: ClassPool | FunctionPool
    test: ClassPool | FunctionPool


def canonical(fields: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The examples in an order fixed by their content (a fixed random projection of each input),
    whatever order the splits were drawn in: the training split is shuffled by the spec's seed, and
    the meta-validation episodes (and functions) must not change with it."""
    flat = fields["input"].reshape(len(fields["input"]), -1).double()
    projection = torch.from_numpy(np.random.default_rng(SPLIT_SEED).standard_normal(flat.shape[1]))
    order = torch.argsort(flat @ projection, stable=True)
    return {name: values[order] for name, values in fields.items()}


def pools(splits: Splits, val_fraction: float, ways: int, regression: bool) -> Pools:
    """The meta-train, meta-validation and meta-test pools of a dataset's splits. The training
    side is the training split with its validation examples put back (those were carved out by
    example; meta-validation is carved out by class), in a canonical order."""
    side = canonical({name: torch.cat([splits.train[name], splits.val[name]]) for name in splits.train})
    if regression:
        if "target" not in side:
            raise PipelineError("objective: regression needs a dataset of functions (a `target` field at each "
                                "point), such as sinusoid")
        count = len(side["input"])
        order = np.random.default_rng(SPLIT_SEED).permutation(count)
        n_val = max(1, int(round(val_fraction * count)))
        return Pools(FunctionPool(side["input"], side["target"], np.sort(order[n_val:])),
                     FunctionPool(side["input"], side["target"], np.sort(order[:n_val])),
                     FunctionPool(splits.test["input"], splits.test["target"], np.arange(len(splits.test["input"]))))
    if "label" not in side or not splits.classes:
        raise PipelineError("classification episodes need a dataset with class labels (mnist1d_fewshot, "
                            "fmnist_fewshot); on a dataset of functions set objective: regression, with a kind that "
                            "adapts (not protonet)")
    split = split_classes(splits.classes, side["label"].numpy(), splits.test["label"].numpy(), val_fraction, ways)
    inputs, labels = side["input"], side["label"]
    return Pools(ClassPool(inputs, labels, split.train), ClassPool(inputs, labels, split.val),
                 ClassPool(splits.test["input"], splits.test["label"], split.test))


def episode_rng(seed: int, stream: str, index: int, salt: int = 0) -> np.random.Generator:
    return np.random.default_rng([seed, STREAMS[stream], salt, index])


def draw(pool: ClassPool | FunctionPool, seed: int, stream: str, indices, ways: int, shots: int, queries: int,
         salt: int = 0) -> Episode:
    """Episodes `indices` of a stream, stacked on a leading task axis."""
    episodes = [pool.episode(episode_rng(seed, stream, int(k), salt), ways, shots, queries) for k in indices]
    return {name: torch.stack([e[name] for e in episodes]) for name in episodes[0]}


def chunks(batch: Episode, size: int):
    """A stacked set of episodes in meta-batches of `size` tasks."""
    total = len(next(iter(batch.values())))
    for start in range(0, total, size):
        yield {name: values[start:start + size] for name, values in batch.items()}


class EpisodeStream(Dataset):
    """Episode k of a stream, drawn from its own generator (index = epoch * per_epoch + step)."""

    def __init__(self, pool, seed: int, stream: str, ways: int, shots: int, queries: int, length: int):
        self.pool, self.seed, self.stream = pool, seed, stream
        self.ways, self.shots, self.queries = ways, shots, queries
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Episode:
        return self.pool.episode(episode_rng(self.seed, self.stream, index), self.ways, self.shots, self.queries)


class EpochEpisodes(Sampler):
    """The episode indices of one epoch: epoch e reads episodes e * n .. (e + 1) * n - 1, so every
    epoch sees new episodes and a resumed run the same ones as an uninterrupted run. Lightning
    calls `set_epoch`."""

    def __init__(self, per_epoch: int):
        self.per_epoch, self.epoch = per_epoch, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.per_epoch

    def __iter__(self):
        return iter(range(self.epoch * self.per_epoch, (self.epoch + 1) * self.per_epoch))


class EpisodeDataModule(pl.LightningDataModule):
    """Meta-batches of training episodes (no validation loader: meta-validation adapts with
    gradients, which Lightning's validation loop turns off, so the learner scores it itself at
    each epoch's end)."""

    def __init__(self, pool, seed: int, ways: int, shots: int, queries: int, meta_batch: int, per_epoch: int):
        super().__init__()
        self.stream = EpisodeStream(pool, seed, "train", ways, shots, queries, length=2**62)
        self.meta_batch = meta_batch
        self.per_epoch = max(meta_batch, per_epoch - per_epoch % meta_batch)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.stream, batch_size=self.meta_batch, sampler=EpochEpisodes(self.per_epoch),
                          drop_last=True)
