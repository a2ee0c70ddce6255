"""A dataset's splits made into a stream of experiences (see ScenarioSpec)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pipeline.data.datamodule import Fields, Splits


@dataclass(frozen=True)
class Experience:
    """One step of the stream: its classes and its share of each split. Every split's fields carry
    `task` (int64, the experience's index), which only a task-incremental learner may read."""

    index: int
    classes: tuple[int, ...]
    train: Fields
    val: Fields
    test: Fields

    def split(self, name: str) -> Fields:
        return getattr(self, name)


def class_order(num_classes: int, seed: int, given: list[int] | None = None) -> list[int]:
    """The order the classes arrive in: `given`, or a permutation seeded by `seed`."""
    if given is not None:
        if sorted(given) != list(range(num_classes)):
            raise ValueError(f"class_order must list each of the {num_classes} classes once (got {given})")
        return list(given)
    return np.random.default_rng(seed).permutation(num_classes).tolist()


def permutations(count: int, size: int, seed: int, permute_first: bool = True) -> list[torch.Tensor]:
    """`count` fixed permutations of `size` input positions, seeded (the first the identity unless
    `permute_first`)."""
    rng = np.random.default_rng([seed, 0x5EED])
    found = [torch.from_numpy(rng.permutation(size)) for _ in range(count)]
    if not permute_first:
        found[0] = torch.arange(size)
    return found


def _with_task(fields: Fields, index: int) -> Fields:
    size = len(next(iter(fields.values())))
    return {**fields, "task": torch.full((size,), index, dtype=torch.int64)}


def _select(fields: Fields, classes: tuple[int, ...]) -> Fields:
    keep = torch.isin(fields["label"], torch.tensor(classes))
    return {name: values[keep] for name, values in fields.items()}


def _permute(fields: Fields, order: torch.Tensor) -> Fields:
    inputs = fields["input"]
    permuted = inputs.reshape(len(inputs), -1)[:, order].reshape(inputs.shape)
    return {**fields, "input": permuted}


def build(spec, splits: Splits, seed: int) -> list[Experience]:
    """The experiences of `spec` (a ScenarioSpec) over `splits`, seeded by `seed`."""
    if not splits.num_classes:
        raise ValueError("a continual scenario needs class labels; the dataset has none")
    num_classes = splits.num_classes
    out = []
    if spec.type == "domain_incremental":
        size = int(np.prod(splits.input_shape))
        everything = tuple(range(num_classes))
        for index, order in enumerate(permutations(spec.experiences, size, seed, spec.permute_first)):
            parts = [_with_task(_permute(getattr(splits, name), order), index) for name in ("train", "val", "test")]
            out.append(Experience(index, everything, *parts))
        return out
    if num_classes % spec.experiences:
        raise ValueError(f"{num_classes} classes do not split evenly into {spec.experiences} experiences")
    order = class_order(num_classes, seed, spec.class_order)
    per = num_classes // spec.experiences
    for index in range(spec.experiences):
        classes = tuple(order[index * per:(index + 1) * per])
        parts = [_with_task(_select(getattr(splits, name), classes), index) for name in ("train", "val", "test")]
        out.append(Experience(index, classes, *parts))
    return out


def union(experiences: list[Experience], split: str = "train") -> Fields:
    """The examples of several experiences together."""
    fields = [e.split(split) for e in experiences]
    return {name: torch.cat([f[name] for f in fields]) for name in fields[0]}
