"""AR1* with latent replay (Lomonaco & Maltoni 2017; Pellegrini et al. 2020):
- experience 0 trains the whole network; from `end_experience(0)` on the lower network is frozen
  (so the latents stored then stay valid for good);
- after each experience, a class-balanced buffer of latents (float32, as the lower network gives
  them, computed in eval mode) takes in random examples of that experience: the room is shared
  equally by the classes seen so far, and an older class's share shrinks by dropping random ones;
- every step of a later experience trains the upper network on the current batch's latents and
  a random draw of `batch_size` latents from the buffer, concatenated;
- CWR* head (`cwr_star`; Lomonaco et al. 2020): the head has no bias (zeroed, not trained) and
  keeps consolidated weights `cw` [C, D] and counts `past` [C] (examples each class was trained
  on). A phase trains the rows of the classes it sees (the experience's and, as in AR1* with
  latent replay, the replayed ones), starting from `cw`, the other rows at zero; when it ends,
  with tw the trained rows and cur_j the examples of class j in the phase (the buffer's count for
  a replayed class):
      w_j   = sqrt(past_j / cur_j)
      cw[j] = (cw[j] * w_j + tw[j] - mean(tw)) / (w_j + 1),   past_j += cur_j
  where mean(tw) is the mean of every entry of the trained rows (a scalar, as the original CWR*
  and Avalanche compute it: a per-dimension mean over the phase's classes would zero a phase of
  one class); then the head is set to `cw` for every class, which is what gets measured.

The buffer and the replay step are `LatentReplay`'s (`latent.py`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from pipeline.data.datamodule import Fields
from pipeline.models.continual.strategies import stored_bytes
from pipeline.models.continual.strategies.latent import LatentReplay, room

if TYPE_CHECKING:
    from pipeline.models.continual.module import Continual


class AR1(LatentReplay):
    """AR1* with latent replay and (`cwr_star`) a CWR* head: see the module's docstring. Keeps
    the latents in float32 (`stored_latents` [N, *latent shape]), and `cw`, `past` for CWR*."""

    def __init__(self, spec, net: Continual):
        super().__init__(spec, net)
        self.register_buffer("stored_latents", torch.zeros(0))
        head = net.head
        if spec.cwr_star:
            self.register_buffer("cw", torch.zeros_like(head.weight.detach()))
            self.register_buffer("past", torch.zeros(net.num_classes, dtype=torch.int64))
            with torch.no_grad():
                head.weight.zero_()  # experience 0 trains its classes' rows from zero
                head.bias.zero_()
            head.bias.requires_grad_(False)  # CWR*'s head has no bias

    def _stored(self) -> torch.Tensor:
        return self.stored_latents

    def _set_stored(self, rows: torch.Tensor) -> None:
        self.stored_latents = rows

    def _replayed(self, rows: torch.Tensor) -> torch.Tensor:
        return self.stored_latents[rows]

    def restore_frozen(self) -> None:
        if int(self.done) > 0:
            self.net.set_lower_frozen(True)

    # --- the protocol ---

    def loss(self, batch: Fields) -> torch.Tensor:
        if not self.net.lower_frozen:
            return super().loss(batch)  # experience 0: the whole network learns, plain cross-entropy
        return self.replay_loss(batch)

    def end_experience(self, index: int) -> None:
        self.net.set_lower_frozen(True)
        fields = self.experiences[index].train
        if self.spec.cwr_star:
            self.consolidate(fields["label"])
        self.fill(fields)
        self.done.fill_(index + 1)

    def next_experience(self, index: int) -> None:
        if self.spec.cwr_star:
            self.prepare_head(self.experiences[index].train["label"])

    # --- the buffer ---

    def sample_bytes(self, latent: torch.Tensor) -> int:
        """Bytes one example takes in the buffer: its latent (float32) and its label."""
        return latent.numel() * 4 + self.label_bytes()

    def fixed_bytes(self) -> int:
        """Bytes kept whatever the buffer holds: CWR*'s consolidated weights and counts."""
        return stored_bytes(self.cw) + stored_bytes(self.past) if self.spec.cwr_star else 0

    def capacity(self, latent: torch.Tensor) -> int:
        memory = self.spec.memory
        if memory.samples is not None:
            return memory.samples
        return room(memory.bytes - self.fixed_bytes(), self.sample_bytes(latent), memory.bytes, "ar1")

    def fill(self, fields: Fields) -> None:
        """Experience's examples into the buffer, as latents of the (now frozen) lower network."""
        inputs, labels = fields["input"], fields["label"]
        if not len(labels):
            return
        capacity = self.capacity(self.latents(inputs[:1])[0])
        kept, taken = self.refill(labels, capacity)
        self.store(kept, self.latents(inputs[taken]).float() if len(taken) else None, labels[taken])

    # --- CWR* ---

    def trained_counts(self, labels: torch.Tensor) -> torch.Tensor:
        """Examples of each class a phase trains on: the experience's and the buffer's (replayed)."""
        counts = torch.bincount(labels.long().cpu(), minlength=self.net.num_classes)
        return counts + torch.bincount(self.labels.long().cpu(), minlength=self.net.num_classes)

    @torch.no_grad()
    def prepare_head(self, labels: torch.Tensor) -> None:
        """Before a phase: its classes' rows from the consolidated weights, the others zero."""
        trained = (self.trained_counts(labels) > 0).to(self.cw.device)
        weight = self.net.head.weight
        weight.copy_(torch.where(trained[:, None], self.cw, torch.zeros_like(self.cw)).to(weight.device))
        self.net.head.bias.zero_()

    @torch.no_grad()
    def consolidate(self, labels: torch.Tensor) -> None:
        """After a phase: its classes' trained rows merged into `cw`; the head set to `cw`."""
        counts = self.trained_counts(labels).to(self.cw.device)
        trained = counts > 0
        weight = self.net.head.weight
        tw = weight.detach().to(self.cw.device)[trained]
        past = self.past[trained].double()
        w_past = torch.sqrt(past / counts[trained].double()).to(tw.dtype)[:, None]
        self.cw[trained] = (self.cw[trained] * w_past + (tw - tw.mean())) / (w_past + 1)
        self.past[trained] += counts[trained]
        weight.copy_(self.cw.to(weight.device))
        self.net.head.bias.zero_()

    def memory(self) -> dict[str, float]:
        samples = len(self.labels)
        size = stored_bytes(self.stored_latents) + samples * self.label_bytes() + self.fixed_bytes()
        return {"memory_samples": samples, "memory_bytes": size}
