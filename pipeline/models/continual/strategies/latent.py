"""Latent replay: the lower network (the modules below `latent_layer`) is frozen, and what a buffer
keeps and replays are its activations at the cut, not raw inputs; every replayed example then
costs one pass through the upper network only, and (compressed) activations can be far smaller
than the images they come from.

This module holds what the latent-replay strategies share (`LatentReplay`: the class-balanced
buffer and the replay step, and the budget helpers); the strategies are in their own modules:
AR1* with latent replay and CWR* in `ar1.py`, REMIND in `remind.py`, REMIND's product quantiser
in `quantizer.py`. `AR1` and `REMIND` can still be imported from here.

Both strategies' buffers hold the labels as uint8 (one byte each, as counted; int16 past 256
classes). In a domain-incremental stream a class comes back in every experience: its room is then
shared between the examples already kept and the new ones in proportion to the experiences each
stand for, so every (class, experience) keeps about the same share.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

import torch

from pipeline.data.datamodule import Fields
from pipeline.models.continual.strategies import Strategy, small_int

if TYPE_CHECKING:
    from pipeline.models.continual.module import Continual

CHUNK = 1024  # examples per pass when a whole experience goes through the lower network


def balanced_quotas(available: dict[int, int], capacity: int) -> dict[int, int]:
    """How many examples each class keeps when `capacity` is shared as equally as possible among
    the classes, none keeping more than it has (`available`): a class with fewer examples than
    its share keeps them all and leaves the rest to the others; the remainder of an uneven split
    goes to the classes with the fewest examples (ties: in class order)."""
    quotas = {c: 0 for c in available}
    remaining = max(0, capacity)
    open_classes = sorted(available, key=lambda c: (available[c], c))
    while open_classes and remaining > 0:
        share = remaining // len(open_classes)
        smallest = open_classes[0]
        if available[smallest] <= share:
            quotas[smallest] = available[smallest]
            remaining -= available[smallest]
            open_classes.pop(0)
            continue
        extra = remaining - share * len(open_classes)
        for rank, c in enumerate(open_classes):
            quotas[c] = share + (rank < extra)
        break
    return quotas


def _pick(positions: torch.Tensor, count: int) -> torch.Tensor:
    """`count` of `positions` at random, in their order."""
    if count >= len(positions):
        return positions
    return positions[torch.randperm(len(positions))[:count]].sort().values


def room(free: int, per_sample: int, budget: int, name: str) -> int:
    """Samples a byte budget holds; a budget that holds none is an error, not a silent no-op."""
    if free < per_sample:
        raise ValueError(f"{name}: memory.bytes {budget:,} holds no sample ({per_sample:,} bytes each, after "
                         f"{budget - free:,} bytes of fixed state): raise memory.bytes")
    return free // per_sample


class LatentReplay(Strategy):
    """What AR1 and REMIND share: a class-balanced buffer of one stored form of latents per
    example (`labels` beside it), filled at the end of each experience, and steps that train the
    upper network on the current batch's latents with a random draw from the buffer.

    Subclasses keep the stored form (`_stored`, `_set_stored`: a buffer whose first axis is the
    example) and say how a stored row becomes the upper network's input (`_replayed`) and how a
    fresh latent is given to it (`_seen`, as it is by default)."""

    def __init__(self, spec, net: Continual):
        super().__init__(spec, net)
        self.register_buffer("labels", torch.zeros(0, dtype=small_int(net.num_classes)))
        # Experiences each class has appeared in (a class comes back in a domain-incremental stream).
        self.register_buffer("appearances", torch.zeros(net.num_classes, dtype=torch.int64))
        self.register_buffer("done", torch.zeros((), dtype=torch.int64))  # experiences ended

    # --- what the subclasses define ---

    def _stored(self) -> torch.Tensor:
        raise NotImplementedError

    def _set_stored(self, rows: torch.Tensor) -> None:
        raise NotImplementedError

    def _replayed(self, rows: torch.Tensor) -> torch.Tensor:
        """The upper network's input for the stored rows `rows` (indices into the buffer)."""
        raise NotImplementedError

    def _seen(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents of fresh inputs as the upper network is given them."""
        return latents

    # --- the lower network ---

    @property
    def device(self) -> torch.device:
        return self.net.head.weight.device

    @torch.no_grad()
    def latents(self, inputs: torch.Tensor) -> torch.Tensor:
        """The lower network's activations for `inputs` (any number: in chunks), in eval mode,
        without gradients, on the network's device."""
        was_training = self.net.training
        self.net.eval()
        try:
            return torch.cat([self.net.lower(inputs[start:start + CHUNK].to(self.device)).contiguous()
                              for start in range(0, len(inputs), CHUNK)])
        finally:
            self.net.train(was_training)

    # --- the buffer ---

    def label_bytes(self) -> int:
        return self.labels.element_size()

    def refill(self, new_labels: torch.Tensor, capacity: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The buffer's class-balanced update for an experience of labels `new_labels`, in room for
        `capacity` examples: (the buffer's rows kept, the experience's examples taken in), each
        sorted. Records the experience's classes as seen once more."""
        old = self.labels.long().cpu()
        new = new_labels.long().cpu()
        appearances = self.appearances.cpu()
        appearances[new.unique()] += 1
        self.appearances.copy_(appearances)
        old_counts = torch.bincount(old, minlength=self.net.num_classes)
        new_counts = torch.bincount(new, minlength=self.net.num_classes)
        classes = torch.nonzero(old_counts + new_counts).flatten().tolist()
        quotas = balanced_quotas({c: int(old_counts[c] + new_counts[c]) for c in classes}, capacity)
        kept, taken = [], []
        for c in classes:
            quota, have, fresh = quotas[c], int(old_counts[c]), int(new_counts[c])
            # The new examples stand for one of the class's experiences, those kept for the others.
            share = quota // max(1, int(appearances[c])) if have else quota
            take = min(fresh, max(share, quota - have))
            kept.append(_pick(torch.nonzero(old == c).flatten(), quota - take))
            taken.append(_pick(torch.nonzero(new == c).flatten(), take))
        none = torch.zeros(0, dtype=torch.int64)
        return torch.cat(kept + [none]).sort().values, torch.cat(taken + [none]).sort().values

    def store(self, kept: torch.Tensor, new_rows: torch.Tensor | None, new_labels: torch.Tensor) -> None:
        """The buffer becomes its rows `kept` followed by `new_rows` (stored form; None: none), the
        labels alike."""
        stored = self._stored()
        parts = [stored[kept.to(stored.device)]] if len(stored) else []
        if new_rows is not None:
            parts.append(new_rows.to(stored.device))
        if parts:
            self._set_stored(torch.cat(parts).to(self.device))
        self.labels = torch.cat([self.labels[kept.to(self.labels.device)],
                                 new_labels.to(self.labels.device, self.labels.dtype)]).to(self.device)

    def draw(self, count: int) -> torch.Tensor:
        """`count` random rows of the buffer (all of it, shuffled, if it holds fewer)."""
        return torch.randperm(len(self.labels), device=self.labels.device)[:count]

    # --- training ---

    def replay_step(self, batch: Fields, draws: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """What a step trains the upper network on: the current batch's latents (frozen lower
        network), then `draws` random draws of `batch_size` from the buffer (none while it is
        empty), concatenated and augmented (`augment`); with their labels and experiences (a
        replayed example's: the first its class belongs to, which matters only to a
        task-incremental stream, where each class belongs to one)."""
        latents = self._seen(self.latents_for_step(batch["input"]))
        labels, task = batch["label"], batch.get("task")
        if len(self.labels):
            rows = torch.cat([self.draw(self.spec.batch_size or len(labels)) for _ in range(draws)])
            replayed_labels = self.labels[rows].long().to(labels.device)
            latents = torch.cat([latents, self._replayed(rows).to(latents.device, latents.dtype)])
            labels = torch.cat([labels, replayed_labels])
            if task is not None:
                task = torch.cat([task, self.net.experience_of(replayed_labels).to(task.device)])
        return self.augment(latents), labels, task

    def augment(self, latents: torch.Tensor) -> torch.Tensor:
        """The step's latents as the upper network trains on them (default: as they are)."""
        return latents

    def replay_loss(self, batch: Fields) -> torch.Tensor:
        """Cross-entropy over the step's latents (`replay_step`)."""
        latents, labels, task = self.replay_step(batch)
        return self.net.cross_entropy(self.net.logits_from_latents(latents, task), {"label": labels})

    def latents_for_step(self, inputs: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.net.lower(inputs).contiguous()

    def restore_frozen(self) -> None:
        """After a load: the lower network frozen as the strategy had it."""

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)
        self.restore_frozen()


_MOVED = {"AR1": "ar1", "REMIND": "remind"}


def __getattr__(name: str):
    """`AR1` and `REMIND`, which lived here, from their own modules: imported on first use, since
    those modules import this one (`from ...latent import AR1` and the strategy registry's
    "latent:AR1" keep working)."""
    if name in _MOVED:
        return getattr(importlib.import_module(f"{__package__}.{_MOVED[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
