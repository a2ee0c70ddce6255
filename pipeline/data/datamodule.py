"""Datasets as in-memory tensors, split into train/val/test, served in batches. Any dataset of
the registry: images or sequences alike, read by the reader its source names."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler

from pipeline import plugins
from pipeline.data.fetch import require_dataset
from pipeline.spec.components import DataSpec


def model_input(values: torch.Tensor) -> torch.Tensor:
    """A field as a model reads it: uint8 intensities scaled to [0, 1], float values as they are
    (in float32), integers (token ids, labels) left integers."""
    if values.dtype == torch.uint8:
        return values.float().div_(255)
    return values.float() if values.is_floating_point() else values


Fields = dict[str, torch.Tensor]
"""Examples as named tensors, each [N, *field shape]; a batch is the same with N = batch size."""


@dataclass(frozen=True)
class Splits:
    """Each split's fields (see DatasetSource.fields): `input` always, `label` (int64) where the
    dataset has classes; `classes` names them (None for an unlabelled dataset)."""

    train: Fields
    val: Fields
    test: Fields
    classes: tuple[str, ...] | None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train["input"].shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.classes) if self.classes else 0

    @classmethod
    def of_pairs(cls, train, val, test, classes) -> Splits:
        """Splits of a labelled dataset from (inputs, labels) pairs."""
        return cls(*({"input": x, "label": y} for x, y in (train, val, test)), classes)

    def with_eval_subset(self, examples: int | None, seed: int) -> Splits:
        """These splits with at most `examples` validation and as many test examples
        (`data.eval_subset`): a seeded choice from each, kept in the split's order (a series'
        windows stay in time order)."""
        if examples is None:
            return self
        rng = np.random.default_rng([seed, examples])

        def limited(fields: Fields) -> Fields:
            size = len(fields["input"])
            if size <= examples:
                return fields
            keep = torch.from_numpy(np.sort(rng.choice(size, examples, replace=False)))
            return {name: values[keep] for name, values in fields.items()}

        return Splits(train=self.train, val=limited(self.val), test=limited(self.test), classes=self.classes)

    def pair(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, labels) of a labelled split."""
        fields = getattr(self, split)
        return fields["input"], fields["label"]


def load_splits(spec: DataSpec, seed: int, root: Path | None = None, written=None) -> Splits:
    """The official test split; validation carved from the training split by a seeded
    permutation; `train_subset` then keeps that many of the remaining training examples.
    `written`: (source, folder) of a dataset written by another spec's stage (`dataset: upstream`)."""
    if written is not None:
        source, folder = written
        folder = require_dataset(source, folder=folder)
    else:
        source = plugins.datasets()[spec.dataset]
        folder = require_dataset(source, root)
    readout = source.load_reader()(folder)
    size = len(next(iter(readout.train.values())))
    order = np.random.default_rng(seed).permutation(size)
    n_val = int(round(spec.val_fraction * size))
    val_idx, train_idx = order[:n_val], order[n_val:]
    if spec.train_subset is not None:
        train_idx = train_idx[: spec.train_subset]

    def take(fields: dict, index=None) -> Fields:
        return {name: torch.from_numpy(np.array(values if index is None else values[index]))
                for name, values in fields.items()}

    return Splits(train=take(readout.train, train_idx), val=take(readout.train, val_idx), test=take(readout.test),
                  classes=readout.classes)


class TensorBatches(Dataset):
    """Indexes whole batches at once (`__getitems__`), so a batch is one gather per field rather
    than B item lookups and a stack. Items and batches are {field: tensor}."""

    def __init__(self, fields: Fields):
        self.fields = fields
        self.size = len(next(iter(fields.values())))

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> Fields:
        return {name: values[index] for name, values in self.fields.items()}

    def __getitems__(self, indices: list[int]) -> Fields:
        index = torch.as_tensor(indices)
        return {name: values[index] for name, values in self.fields.items()}


class EpochShuffle(RandomSampler):
    """A permutation that depends only on (seed, epoch), not on how many epochs this process
    has run: a resumed run sees the same order as an uninterrupted one. Lightning calls
    `set_epoch`; under DDP it swaps in a DistributedSampler, whose order is seeded the same way."""

    def __init__(self, data_source: Dataset, seed: int):
        super().__init__(data_source)
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(len(self.data_source), generator=generator).tolist())


def _as_batch(batch: Fields) -> Fields:
    return batch


class TensorDataModule(pl.LightningDataModule):
    """The splits of the spec's dataset, shuffled per epoch by a (seed, epoch) permutation. Training
    drops the last incomplete batch (every step sees a full batch); `drop_last=False` keeps it, for
    a fit that must see every training example (a closed-form readout)."""

    def __init__(self, spec: DataSpec, seed: int, splits: Splits | None = None, drop_last: bool = True):
        super().__init__()
        self.spec, self.seed = spec, seed
        self.splits = splits
        self.drop_last = drop_last

    def setup(self, stage: str | None = None) -> None:
        if self.splits is None:
            self.splits = load_splits(self.spec, self.seed)

    def _loader(self, split: Fields, train: bool) -> DataLoader:
        dataset = TensorBatches(split)
        return DataLoader(
            dataset,
            batch_size=self.spec.batch_size,
            sampler=EpochShuffle(dataset, self.seed) if train else None,
            drop_last=self.drop_last and train and len(dataset) >= self.spec.batch_size,
            num_workers=self.spec.num_workers,
            persistent_workers=self.spec.num_workers > 0,
            collate_fn=_as_batch,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.splits.train, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.splits.val, train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.splits.test, train=False)
