"""Continual-learning strategies: each a part of its own, plugged into the network's training
protocol (see `Strategy`). `build(spec, net)` makes the one a spec names."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.data.datamodule import Fields

if TYPE_CHECKING:
    from pipeline.models.continual.module import Continual
    from pipeline.models.continual.scenario import Experience


class Strategy(nn.Module):
    """What a strategy decides, as hooks of the network's protocol (`Continual`), in the order they
    are called for the experiences i = 0, 1, ...:

        train_fields(i)        the examples phase i trains on (default: experience i's)
        loss(batch)            the objective of each training step (default: cross-entropy)
        after_step()           after each optimiser step (e.g. SI's path integral)
        end_experience(i)      once phase i's training is done, before it is measured (consolidate
                               weights, fill a buffer, keep a copy of the network)
        next_experience(i + 1) after the measurement, to prepare the next phase (e.g. GDumb's reset)

    Everything a strategy keeps between experiences is a buffer (or a parameter) of the module, so
    that it is saved with the network after each phase and in every checkpoint, and a resumed run
    continues with it; buffers may change size as the stream goes on (see `_load_from_state_dict`).
    A strategy holds its network through a plain reference, not as a submodule."""

    def __init__(self, spec, net: Continual):
        super().__init__()
        self.spec = spec
        object.__setattr__(self, "net", net)  # not a submodule: the network owns the strategy

    @property
    def experiences(self) -> list[Experience]:
        return self.net.experiences

    # --- the protocol ---

    def phases(self) -> list[tuple[str, list[int]]]:
        """The fits, each named, with the experiences whose validation examples it is checked on."""
        return [(f"experience_{e.index}", [e.index]) for e in self.experiences]

    def train_fields(self, index: int) -> Fields:
        """The examples phase `index` trains on; called when that phase's fit starts."""
        return self.experiences[index].train

    def loss(self, batch: Fields) -> torch.Tensor:
        return self.net.cross_entropy(self.net.logits(batch["input"], batch.get("task")), batch)

    def after_step(self) -> None:
        pass

    def end_experience(self, index: int) -> None:
        pass

    def next_experience(self, index: int) -> None:
        pass

    def current_classes(self) -> torch.Tensor:
        """[C] bool: the classes of the experience being trained, `net.phase` (none before a stream
        is built; a loaded model's evaluation builds it again, at phase 0)."""
        mask = torch.zeros(self.net.num_classes, dtype=torch.bool, device=self.net.head.weight.device)
        if self.experiences:
            mask[list(self.experiences[self.net.phase].classes)] = True
        return mask

    def scores(self, inputs: torch.Tensor, task: torch.Tensor | None) -> torch.Tensor:
        """Scores of every class [B, C] whose argmax is the prediction (default: the logits)."""
        return self.net.logits(inputs, task)

    def memory(self) -> dict[str, float]:
        """What the strategy stores beyond the network itself: `memory_samples` (examples or latents
        kept) and `memory_bytes` (everything it keeps, at the size it is stored in)."""
        return {"memory_samples": 0, "memory_bytes": 0}

    # --- state that changes size ---

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        # A buffer grows as the stream goes on (a replay buffer, a copy of the network made after
        # the first experience): take the saved one's size before copying it in.
        for name, buffer in list(self._buffers.items()):
            key = prefix + name
            if key in state_dict and (buffer is None or buffer.shape != state_dict[key].shape):
                saved = state_dict[key]
                self._buffers[name] = torch.empty_like(saved, device=buffer.device if buffer is not None else "cpu")
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)


def safe(name: str) -> str:
    """A parameter's name as a buffer's (no dots)."""
    return name.replace(".", "__")


def stored_bytes(values: torch.Tensor) -> int:
    return values.numel() * values.element_size()


def small_int(count: int) -> torch.dtype:
    """The integer type a buffer keeps ids (labels, experiences) in, for `count` distinct ones."""
    return torch.uint8 if count <= 256 else torch.int16


def distillation(logits: torch.Tensor, targets: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(softmax(targets / T) || softmax(logits / T)) * T^2, averaged over the batch."""
    return F.kl_div(F.log_softmax(logits / temperature, dim=1), F.softmax(targets / temperature, dim=1),
                    reduction="batchmean") * temperature**2


def build(spec, net: Continual) -> Strategy:
    from pipeline import plugins

    return plugins.strategies()[spec.name].load_class()(spec, net)
