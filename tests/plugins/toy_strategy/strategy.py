"""`l2_anchor` as a `Strategy`: its anchor is a set of buffers (saved with the network and in every
checkpoint), declared empty when it is built and filled from the network's parameters at the end
of each experience."""

from __future__ import annotations

import torch

from pipeline.data.datamodule import Fields
from pipeline.models.continual.strategies import Strategy, safe, stored_bytes


class L2Anchor(Strategy):
    def __init__(self, spec, net):
        super().__init__(spec, net)
        for name in self._plastic():
            self.register_buffer(f"anchor__{safe(name)}", None)  # filled after the first experience

    def _plastic(self) -> dict[str, torch.nn.Parameter]:
        return {name: p for name, p in self.net.named_parameters()
                if not name.startswith("strategy.") and p.requires_grad}

    def penalty(self) -> torch.Tensor:
        terms = [((p - anchor) ** 2).sum() for name, p in self._plastic().items()
                 if (anchor := self._buffers.get(f"anchor__{safe(name)}")) is not None]
        return self.spec.strength * torch.stack(terms).sum() if terms else torch.zeros(())

    def loss(self, batch: Fields) -> torch.Tensor:
        return super().loss(batch) + self.penalty()

    def end_experience(self, index: int) -> None:
        for name, p in self._plastic().items():
            self.register_buffer(f"anchor__{safe(name)}", p.detach().clone())

    def memory(self) -> dict[str, float]:
        return {"memory_samples": 0,
                "memory_bytes": sum(stored_bytes(b) for b in self._buffers.values() if b is not None)}
