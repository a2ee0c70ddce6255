"""Contrastive Predictive Coding (van den Oord et al. 2018; CPC v2, Henaff et al. 2019): the
specs. The LightningModules are in `image.py` and `sequence.py` (imported only to train)."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, model_validator

from pipeline.spec.components import Strict


def _positive(values: list[int], name: str) -> None:
    if any(v <= 0 for v in values):
        raise ValueError(f"{name} must all be > 0 (got {values})")


class PatchGridSpec(Strict):
    """How an image is cut into overlapping square patches: zero-pad it by `padding` on every
    side, then take `size` x `size` patches every `stride` pixels. 28x28 with size 8, stride 4,
    padding 2 gives a 7x7 grid with 50% overlap."""

    size: int = Field(8, gt=0, description="Patch side in pixels.")
    stride: int = Field(4, gt=0, description="Pixels between the starts of neighbouring patches.")
    padding: int = Field(2, ge=0, description="Zero padding around the image before cutting.")

    def grid(self, height: int, width: int) -> tuple[int, int]:
        """(rows, columns) of the grid; a ValueError unless the patches tile the padded image
        exactly (no pixels left over at the bottom or right)."""
        sides = []
        for side, name in ((height, "height"), (width, "width")):
            span = side + 2 * self.padding - self.size
            if span < 0 or span % self.stride:
                raise ValueError(
                    f"patches of {self.size} px every {self.stride} px do not tile an image {name} of "
                    f"{side} px padded by {self.padding} (need ({side} + 2*padding - size) to be a "
                    f"non-negative multiple of stride)")
            sides.append(span // self.stride + 1)
        return sides[0], sides[1]

    def first_offset(self, jitter: int = 0) -> int:
        """The smallest row offset whose target patch shares no pixel with the context patch,
        when each patch may be shifted by up to `jitter` pixels either way on its own: rows k
        apart start k * stride pixels apart, and two shifts can close that gap by 2 * jitter, so
        k * stride - 2 * jitter >= size is needed."""
        return math.ceil((self.size + 2 * jitter) / self.stride)


class PatchAugmentSpec(Strict):
    """Augmentations applied to each patch on its own (CPC v2), batched over all patches."""

    jitter: int = Field(1, ge=0, description="Each patch is shifted by up to this many pixels.")
    brightness: float = Field(0.4, ge=0, description="Max relative brightness change per patch.")
    contrast: float = Field(0.4, ge=0, description="Max relative contrast change per patch.")
    flip: float = Field(0.5, ge=0, le=1, description="Probability of flipping the whole image left-right.")


class CPCImageSpec(Strict):
    kind: Literal["cpc_image"]
    patch: PatchGridSpec = PatchGridSpec()
    augment: PatchAugmentSpec = PatchAugmentSpec()
    encoder_widths: list[int] = Field(
        [32, 64, 128], min_length=1,
        description="Channels of the per-patch encoder's 3x3 conv layers (each after the first halves "
                    "the resolution); the last is the code size.")
    norm: Literal["group", "layer"] = Field(
        "group", description="Normalisation in the patch encoder; never BatchNorm, which leaks across patches.")
    context_width: int = Field(128, gt=0, description="Channels of the masked context network.")
    context_layers: int = Field(3, gt=0, description="Residual masked-convolution blocks.")
    context_kernel: int = Field(3, gt=0, description="Kernel width (and height) of the masked convolutions.")
    offsets: int = Field(
        3, gt=0, description="Rows below predicted, starting at the first whose patches do not overlap the "
                             "context patch (row offset ceil(size/stride)).")
    feature_grid: int = Field(
        2, gt=0, description="Downstream features: the patch codes average-pooled to a grid x grid map.")

    @model_validator(mode="after")
    def _check(self) -> CPCImageSpec:
        _positive(self.encoder_widths, "encoder_widths")
        if self.context_kernel % 2 == 0:
            raise ValueError(f"context_kernel must be odd (got {self.context_kernel})")
        return self

    @property
    def first_offset(self) -> int:
        """The first row offset predicted: the nearest whose target patches share no pixel with
        the context patch under the per-patch jitter."""
        return self.patch.first_offset(self.augment.jitter)

    def check_input(self, shape: tuple[int, ...]) -> None:
        """Raises ValueError when the dataset's examples ([C, H, W]) do not suit this model."""
        rows, _ = self.patch.grid(shape[1], shape[2])
        last = self.first_offset + self.offsets - 1
        if last >= rows:
            raise ValueError(
                f"offsets {self.offsets} reach row offset {last}, but the patch grid has only {rows} rows "
                f"(the first offset is {self.first_offset}, patches of {self.patch.size} px every "
                f"{self.patch.stride} px with a jitter of {self.augment.jitter} px): at most "
                f"{rows - self.first_offset}")


class ConvLayerSpec(Strict):
    channels: int = Field(gt=0)
    kernel: int = Field(gt=0)
    stride: int = Field(1, gt=0)

    @property
    def padding(self) -> int:
        """Keeps length / stride steps (a stride-1 layer keeps the length)."""
        return (self.kernel - self.stride + 1) // 2


class SequenceAugmentSpec(Strict):
    scale: float = Field(0.2, ge=0, description="Amplitude multiplied by a factor in [1 - scale, 1 + scale].")
    noise: float = Field(0.05, ge=0, description="Std of added Gaussian noise (signals are standardised).")
    shift: int = Field(
        2, ge=0, description="Random shift in time of up to this many samples either way; the samples "
                             "shifted in are zeros (the signals' mean), nothing wraps around.")


class CPCSequenceSpec(Strict):
    kind: Literal["cpc_sequence"]
    encoder: list[ConvLayerSpec] = Field(
        [ConvLayerSpec(channels=64, kernel=4, stride=4), ConvLayerSpec(channels=128, kernel=1)],
        min_length=1,
        description="Strided Conv1d layers: the signal -> one code per (strided) time step. Codes whose "
                    "windows overlap make the nearest targets trivial to predict (the default's do not).")
    context_dim: int = Field(256, gt=0, description="GRU hidden size.")
    steps: int = Field(6, gt=0, description="K: future steps predicted, each with its own linear predictor.")
    same_sequence_negatives: bool = Field(
        False, description="false: the negatives of a prediction are the codes of the other sequences of "
                           "the batch at the same step; true: every code of the batch, at every step.")
    pooling: Literal["mean", "last"] = Field(
        "mean", description="Downstream features: the context averaged over time, or its last step.")
    augment: SequenceAugmentSpec = SequenceAugmentSpec()

    def time_steps(self, length: int) -> int:
        for layer in self.encoder:
            length = (length + 2 * layer.padding - layer.kernel) // layer.stride + 1
        return length

    def check_input(self, shape: tuple[int, ...]) -> None:
        steps = self.time_steps(shape[-1])
        if steps <= self.steps:
            raise ValueError(f"the encoder turns {shape[-1]} samples into {steps} steps; predicting "
                             f"{self.steps} steps ahead needs more than {self.steps}")
