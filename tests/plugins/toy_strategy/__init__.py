"""A continual strategy plugin: `l2_anchor`, a penalty `strength * sum (w - w*)^2` pulling every
weight towards its value after the previous experience (the plain L2 baseline that EWC weighs by
importance). Its spec joins the continual learner's `strategy` union; its class is in `strategy.py`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from pipeline.plugins import Plugin, StrategyEntry
from pipeline.spec.components import Strict


class L2AnchorSpec(Strict):
    """L2 towards the weights after the previous experience."""

    name: Literal["l2_anchor"] = "l2_anchor"
    strength: float = Field(1.0, ge=0, description="Weight of the penalty.")


PLUGIN = Plugin(
    name="toy_strategy",
    summary="A toy continual strategy: L2 towards the previous experience's weights",
    strategies={"l2_anchor": StrategyEntry(L2AnchorSpec, "toy_strategy.strategy:L2Anchor",
                                           "L2 towards the weights after the previous experience")},
)
