"""Datasets as in-memory tensors, split into train/val/test, served in batches. Any dataset of
the registry: images or sequences alike, read by the reader its source names."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler

from pipeline.data.fetch import require_dataset
from pipeline.data.registry import DATASETS
from pipeline.spec.experiment import DataSpec


def as_float(inputs: torch.Tensor) -> torch.Tensor:
    """Model input: uint8 images scaled to [0, 1]; float data (e.g. standardised signals) as is."""
    return inputs.float().div_(255) if inputs.dtype == torch.uint8 else inputs.float()


@dataclass(frozen=True)
class Splits:
    """Inputs [N, *input_shape] (uint8 images [N, C, H, W] or float signals [N, C, L]) and int64
    labels [N] of each split."""

    train: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]
    classes: tuple[str, ...]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train[0].shape[1:])


def load_splits(spec: DataSpec, seed: int, root: Path | None = None) -> Splits:
    """The official test split; validation carved from the training split by a seeded
    permutation; `train_subset` then keeps that many of the remaining training images."""
    source = DATASETS[spec.dataset]
    folder = require_dataset(source, root)
    train_x, train_y, test_x, test_y, classes = source.load_reader()(folder)
    order = np.random.default_rng(seed).permutation(len(train_x))
    n_val = int(round(spec.val_fraction * len(train_x)))
    val_idx, train_idx = order[:n_val], order[n_val:]
    if spec.train_subset is not None:
        train_idx = train_idx[: spec.train_subset]

    def pair(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(np.array(x)), torch.from_numpy(np.array(y))

    return Splits(
        train=pair(train_x[train_idx], train_y[train_idx]),
        val=pair(train_x[val_idx], train_y[val_idx]),
        test=pair(test_x, test_y),
        classes=classes,
    )


class TensorBatches(Dataset):
    """Indexes whole batches at once (`__getitems__`), so a batch is one tensor gather
    rather than B item lookups and a stack."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.labels[index]

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(indices)
        return self.images[index], self.labels[index]


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


def _as_batch(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    return batch


class TensorDataModule(pl.LightningDataModule):
    """The splits of the spec's dataset, shuffled per epoch by a (seed, epoch) permutation."""

    def __init__(self, spec: DataSpec, seed: int, splits: Splits | None = None):
        super().__init__()
        self.spec, self.seed = spec, seed
        self.splits = splits

    def setup(self, stage: str | None = None) -> None:
        if self.splits is None:
            self.splits = load_splits(self.spec, self.seed)

    def _loader(self, split: tuple[torch.Tensor, torch.Tensor], train: bool) -> DataLoader:
        dataset = TensorBatches(*split)
        return DataLoader(
            dataset,
            batch_size=self.spec.batch_size,
            sampler=EpochShuffle(dataset, self.seed) if train else None,
            drop_last=train and len(split[1]) >= self.spec.batch_size,
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
