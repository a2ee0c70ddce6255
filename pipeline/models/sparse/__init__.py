"""Sparse activity and sparse weights (Ahmad & Scheinkman 2019, "How can we be so dense?"): a
k-winners-take-all activation with boosting, and fixed sparse weight masks, in a small supervised
CNN that runs dense or sparse from one spec. The spec, pure pydantic; the layers in `layers.py`,
the network in `module.py`.

k-winners: per example, the k largest of a layer's boosted activities pass unchanged and the rest
are zeroed (gradients reach the winners only). Boosting favours units that win too rarely: each
unit's activity is multiplied, for the choice of winners only, by exp(beta (a - d_i)), a = k / n
the target density and d_i the unit's duty cycle, the running share of examples it was active for
(over the last `duty_cycle_period` examples). beta (`boost_strength`) decays by `boost_decay` after
each epoch; at inference `k_inference_factor` x k units may win. In a conv layer the winners are
chosen over the whole map (channels x positions) and the duty cycles are per channel.

Sparse weights: each unit (a dense layer's row, a conv layer's output channel) keeps a fixed random
`density` share of its incoming weights, chosen at initialisation; the others stay zero.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from pipeline.spec.components import Strict


class KWinnersSpec(Strict):
    """A k-winners-take-all activation with boosting."""

    percent_on: float = Field(gt=0, le=1, description="k / n: the share of the layer's units that stay active.")
    boost_strength: float = Field(1.5, ge=0, description="beta: boosting's strength at the start (0: no boosting).")
    boost_decay: float = Field(0.85, gt=0, le=1, description="beta is multiplied by this after every epoch.")
    duty_cycle_period: int = Field(1000, gt=0, description="Examples the duty cycles average over.")
    k_inference_factor: float = Field(1.5, ge=1, description="At inference k x this many units may win.")


class SparseCNNSpec(Strict):
    """Per entry of `channels` a 5x5 conv (padding 2), the activation and a 2x2 max pool; then a
    hidden dense layer and a linear head to the classes. Each layer's activation is ReLU (dense
    activity) or k-winners (sparse), and each layer's weights are dense or a fixed sparse mask:
    Ahmad & Scheinkman's dense and sparse CNNs are two settings of this one spec. Features for
    downstream tasks: the hidden layer's activity."""

    kind: Literal["sparse_cnn"]
    channels: list[int] = Field([32, 64], min_length=1)
    hidden: int = Field(300, gt=0)
    conv_kwinners: KWinnersSpec | None = Field(
        None, description="k-winners after every conv layer (None: ReLU).")
    hidden_kwinners: KWinnersSpec | None = Field(None, description="k-winners after the hidden layer (None: ReLU).")
    conv_density: float = Field(1.0, gt=0, le=1, description="Share of each conv filter's weights kept (1: dense).")
    hidden_density: float = Field(1.0, gt=0, le=1, description="Share of each hidden unit's weights kept (1: dense).")

    @model_validator(mode="after")
    def _positive(self) -> SparseCNNSpec:
        if any(c <= 0 for c in self.channels):
            raise ValueError(f"channels must all be > 0 (got {self.channels})")
        return self

    @property
    def sparse(self) -> bool:
        return bool(self.conv_kwinners or self.hidden_kwinners) or min(self.conv_density, self.hidden_density) < 1

    def check_input(self, shape: tuple[int, ...]) -> None:
        if len(shape) != 3:
            raise ValueError(f"sparse_cnn takes images [channels, height, width], not inputs of shape {list(shape)}")
        if min(shape[1:]) < 2 ** len(self.channels):
            raise ValueError(f"{len(self.channels)} pooled conv layers halve a {shape[1]}x{shape[2]} image below "
                             "one pixel")

