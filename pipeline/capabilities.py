"""What a trained model can offer downstream tasks, as `typing.Protocol` classes: a model entry
lists those it provides (`ModelEntry.provides`), a task entry those it needs (`TaskEntry.needs`),
and a spec pairing a task with a model that lacks one is rejected at validation. A test checks
that every registered model class has the members of each capability it declares.

These are the capabilities any family may offer; a family with an interface of its own (a spiking
pass, a continual learner's stream) declares its protocol in its own folder, and the tasks that
need it import it from there. Only pure typing here: importing this module loads no torch.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Encoder(Protocol):
    """Features of a batch: `encoder` maps inputs [B, ...] to vectors [B, encoder.out_dim]."""

    encoder: Any


@runtime_checkable
class Classifier(Protocol):
    """Its own predictions: `predict(inputs)` -> class indices [B]; `classify(inputs)` -> the scores
    they are the argmax of, [B, classes]: logits, or log-probabilities where the model predicts a
    distribution of its own (an ensemble's mean); their softmax is its predictive distribution."""

    def predict(self, inputs: Any) -> Any: ...

    def classify(self, inputs: Any) -> Any: ...


@runtime_checkable
class NetworkStats(Protocol):
    """What the network is made of: `network_stats(probe)` -> parameters, neurons, synapses used and
    dense, and its own figures (time constants, solver steps); `probe()` runs it once on a test
    batch, for what it counts per pass."""

    def network_stats(self, probe: Any = None) -> dict[str, float]: ...


@runtime_checkable
class Forecaster(Protocol):
    """A series model: `predict_next(window)` (one step ahead at each step) and
    `generate(window, steps)` (free running on its own outputs)."""

    def predict_next(self, inputs: Any) -> Any: ...

    def generate(self, inputs: Any, steps: int) -> Any: ...


@runtime_checkable
class VideoPredictor(Protocol):
    """Frames predicted from the frames before them: `rollout(frames, context)`."""

    def rollout(self, frames: Any, context: int | None = None) -> Any: ...


def members(capability: type) -> set[str]:
    """The attributes and methods a capability asks for."""
    names: set[str] = set()
    for base in capability.__mro__:
        if base in (Protocol, object) or not getattr(base, "_is_protocol", False):
            continue
        names |= {name for name in (*base.__dict__, *getattr(base, "__annotations__", {}))
                  if not name.startswith("_")}
    return names
