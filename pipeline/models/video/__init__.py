"""Predictive-coding networks for next-frame video prediction: PredNet (Lotter, Kreiman & Cox
2016) and PreCNet (Straka, Svoboda & Hoffmann 2020). The specs, pure pydantic; the networks are
in `module.py`.

Both are stacks of layers, each with a representation R (a ConvLSTM), a prediction A-hat made
from R, a target A and error units E = [ReLU(A-hat - A), ReLU(A - A-hat)]. At the bottom the
target is the frame and A-hat the predicted frame. They differ in what the layers above predict:
- PredNet: layer l+1's target is built from layer l's *error*, A_l+1 = maxpool(ReLU(conv(E_l))),
  so the higher layers predict the errors of the lower ones; R is updated top-down, then the
  errors are computed bottom-up.
- PreCNet: layer l+1 predicts layer l's *representation*, A_l+1 = maxpool(R_l), as in Rao and
  Ballard's scheme; each non-top layer has two ConvLSTMs updating the same state, one driven
  top-down by the error from above, one bottom-up by its own error, and the errors are computed
  again in the bottom-up pass against the freshly updated lower representation.

Both are trained on their own errors: the weighted mean of each layer's error units over time,
weight 0 on the first frame (nothing to predict it from)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from pipeline.spec.components import Strict


class _VideoPredictorSpec(Strict):
    r_channels: list[int] = Field(
        [16, 32, 64], min_length=1,
        description="Channels of each layer's representation R, bottom to top; each layer above halves the "
                    "resolution, so frame sides must be divisible by 2^(layers-1).")
    kernel: int = Field(3, gt=0, description="Kernel side of the ConvLSTMs and of the A-hat convolutions (odd).")
    layer_weights: list[float] | None = Field(
        None, description="Weight of each layer's mean error in the loss, bottom to top; null: the bottom layer "
                          "only ([1, 0, ...], the 'L0' training of both papers).")
    pixel_max: float = Field(1.0, gt=0, description="The predicted frame is clipped to [0, pixel_max].")
    loss: Literal["l1", "l2"] = Field(
        "l2", description="What a layer's error is in the loss: l1, the mean of its error units (both papers); "
                          "l2, the mean of their squares (the squared prediction error). On sparse frames (items "
                          "on a black canvas) l1 drives the ReLU frame prediction to a blank frame within a few "
                          "steps, where it stays (no gradient through a dead ReLU); l2 does not.")

    @property
    def layers(self) -> int:
        return len(self.r_channels)

    def weights(self) -> list[float]:
        return list(self.layer_weights) if self.layer_weights is not None else [1.0] + [0.0] * (self.layers - 1)

    @model_validator(mode="after")
    def _check(self):
        if any(c <= 0 for c in self.r_channels):
            raise ValueError(f"r_channels must all be > 0 (got {self.r_channels})")
        if self.kernel % 2 == 0:
            raise ValueError(f"kernel must be odd, so that a convolution keeps the frame size (got {self.kernel})")
        if self.layer_weights is not None:
            if len(self.layer_weights) != self.layers:
                raise ValueError(f"layer_weights has {len(self.layer_weights)} entries for {self.layers} layers")
            if any(w < 0 for w in self.layer_weights) or not any(w > 0 for w in self.layer_weights):
                raise ValueError(f"layer_weights must be >= 0 with one > 0 (got {self.layer_weights})")
        return self

    def check_input(self, shape: tuple[int, ...]) -> None:
        if len(shape) != 4:
            raise ValueError(f"takes videos [frames, channels, height, width], not inputs of shape {list(shape)}")
        frames, _, height, width = shape
        side = 2 ** (self.layers - 1)
        if height % side or width % side:
            raise ValueError(f"frame sides {height}x{width} must be divisible by 2^(layers-1) = {side} with "
                             f"{self.layers} layers (r_channels): use fewer layers or another canvas")
        if frames < 2:
            raise ValueError("needs at least 2 frames: one to predict from, one to predict")


class PredNetSpec(_VideoPredictorSpec):
    """PredNet (Lotter et al. 2016): per layer a ConvLSTM R, A-hat = ReLU(conv(R)), errors split
    into positive and negative parts, the next layer's target A_l+1 = maxpool(ReLU(conv(E_l)))."""

    kind: Literal["prednet"]
    a_channels: list[int] | None = Field(
        None, description="Channels of the targets A of the layers above the bottom (layers-1 entries); null: "
                          "those of the representation below (r_channels[:-1]), the shapes PreCNet has.")

    @model_validator(mode="after")
    def _check_a(self) -> PredNetSpec:
        if self.a_channels is not None and len(self.a_channels) != self.layers - 1:
            raise ValueError(f"a_channels needs {self.layers - 1} entries (one per layer above the bottom), "
                             f"got {len(self.a_channels)}")
        if self.a_channels is not None and any(c <= 0 for c in self.a_channels):
            raise ValueError(f"a_channels must all be > 0 (got {self.a_channels})")
        return self

    def target_channels(self, input_channels: int) -> list[int]:
        above = self.a_channels if self.a_channels is not None else self.r_channels[:-1]
        return [input_channels, *above]


class PreCNetSpec(_VideoPredictorSpec):
    """PreCNet (Straka et al. 2020): a layer predicts the pooled representation of the layer below,
    two ConvLSTMs per non-top layer (top-down and bottom-up), errors recomputed bottom-up against
    the updated lower representation."""

    kind: Literal["precnet"]

    def target_channels(self, input_channels: int) -> list[int]:
        return [input_channels, *self.r_channels[:-1]]
