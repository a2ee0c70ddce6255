"""The bounds every strategy is read between: fine-tuning on each experience in turn (naive, the
lower bound), one fit on every experience at once (joint, the upper bound), and cumulative
training (each experience with all the ones before it)."""

from __future__ import annotations

import torch

from pipeline.data.datamodule import Fields
from pipeline.models.continual.scenario import union
from pipeline.models.continual.strategies import Strategy


class Naive(Strategy):
    """The default protocol: the current experience's examples, cross-entropy over every class;
    with `contrast: current`, over the current experience's classes only (the "labels trick",
    Zeno et al. 2018): the logits of every other class are left out of the softmax, so the head's
    rows of earlier classes get no gradient from the new examples. A prediction is the argmax over
    every class either way."""

    def loss(self, batch: Fields) -> torch.Tensor:
        if self.spec.contrast != "current":
            return super().loss(batch)
        current = self.current_classes()
        if not current.any():
            raise RuntimeError("the labels trick trains within a stream: build_stream() first")
        logits = self.net.logits(batch["input"], batch.get("task"))
        return self.net.cross_entropy(logits.masked_fill(~current, float("-inf")), batch)


class Joint(Strategy):
    """One phase over the union of every experience's training examples, checked on all of them."""

    def phases(self) -> list[tuple[str, list[int]]]:
        return [("joint", [e.index for e in self.experiences])]

    def train_fields(self, index: int) -> Fields:
        return union(self.experiences)


class Cumulative(Strategy):
    """Phase i trains on experiences 0..i, continuing from the weights phase i - 1 left. Stores
    every example seen."""

    def train_fields(self, index: int) -> Fields:
        return union(self.experiences[: index + 1])

    def memory(self) -> dict[str, float]:
        done = int(self.net.rows)
        if not done:
            return super().memory()
        kept = union(self.experiences[:done])
        size = len(kept["label"])
        return {"memory_samples": size, "memory_bytes": size * (kept["input"][0].numel() * kept["input"].element_size()
                                                                + 1)}
