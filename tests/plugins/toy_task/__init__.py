"""A task plugin: `toy_topk`, the share of test examples whose class is among the network's k
highest scores, against chance (k / classes). It needs a capability no core task needs, declared
here as a Protocol: the network's scores, not only its decisions."""

from __future__ import annotations

from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import Field

from pipeline.plugins import Plugin, TaskEntry
from pipeline.spec.components import Strict


@runtime_checkable
class Scorer(Protocol):
    """Scores of every class: `classify(inputs)` -> logits [B, C]."""

    def classify(self, inputs: Any) -> Any: ...


class TopKSpec(Strict):
    """Top-k accuracy of the network's scores on the test split, against chance."""

    kind: Literal["toy_topk"] = "toy_topk"
    k: int = Field(2, gt=0, description="How many of the highest scores may hold the class.")


PLUGIN = Plugin(
    name="toy_task",
    summary="A toy downstream task: top-k accuracy of a network's scores",
    tasks={"toy_topk": TaskEntry(TopKSpec, "toy_task.run", (Scorer,), "top-k accuracy against chance")},
)
