"""Hebbian layers trained without backpropagation: SoftHebb (Moraitis et al. 2022; Journé et al.
2023) and Krotov & Hopfield's competing hidden units (2019). The spec, pure pydantic; the rules
are plain functions of tensors in `rules.py`, the network in `module.py`.

A layer (dense, or convolutional: the same rule on every input patch, the units competing at each
position) computes u = <W, x> for its K units and learns from its own input and u alone:

- SoftHebb: y = softmax(t_invert u) over the units; the winner (largest u) keeps +y, every other
  unit gets -y (soft anti-Hebbian plasticity); dW_k = sum_n y_nk (x_n - u_nk W_k). Its learning
  rate is adaptive, eta |‖W_k‖ - 1|^power per unit: large while a unit's norm is far from the
  norm 1 the rule converges to, vanishing as it arrives.
- Krotov-Hopfield: u = sum_i sign(W_i) |W_i|^(p-1) x_i (the Lebesgue p inner product); per input
  the most active unit gets g = 1, the unit ranked `rank`-th gets g = -delta (anti-Hebbian),
  all others 0; dW_k = sum_n g_nk (x_n - u_nk W_k).

Both updates are divided by their largest magnitude over the layer (as the papers' code does) and
reach the optimiser as gradients (`as_gradients`): use plain SGD without momentum or weight decay
to run the rules as published (an adaptive optimiser rescales them into another rule).
Every layer learns at once, each from the previous layer's output in the same forward pass; no
autograd graph reaches a Hebbian layer during training.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from pipeline.spec.components import Strict


class HebbianLayerSpec(Strict):
    """One Hebbian layer: `conv` (a kernel x kernel convolution, stride 1, reflect padding that
    keeps the size, then the activation and a 4x4 pool of stride 2 that halves it) or `dense` (on
    the flattened input)."""

    type: Literal["conv", "dense"] = "conv"
    units: int = Field(gt=0, description="Channels (conv) or units (dense): the competing neurons.")
    kernel: int = Field(5, gt=0, description="conv: the kernel's side (odd keeps the map's size).")
    pool: Literal["max", "avg", "none"] = Field(
        "max", description="conv: a 4x4 pool of stride 2 and padding 1 after the activation (halves the map).")
    batchnorm: bool = Field(
        True, description="Standardise the layer's input per channel (batch norm without learned scale or shift).")
    activation: Literal["triangle", "relu"] = Field(
        "triangle",
        description="What the next layer and the features read: triangle, (u - mean over units)_+ ^ power "
                    "(SoftHebb); relu, (u)_+ ^ power (Krotov-Hopfield's readout).")
    power: float = Field(1.0, gt=0, description="The activation's exponent.")
    t_invert: float = Field(1.0, gt=0, description="softhebb: the softmax's inverse temperature.")
    lr_scale: float = Field(1.0, gt=0, description="This layer's learning rate as a multiple of the optimiser's.")

    @model_validator(mode="after")
    def _odd_kernel(self) -> HebbianLayerSpec:
        if self.type == "conv" and self.kernel % 2 == 0:
            raise ValueError(f"kernel must be odd (got {self.kernel}): the padding keeps the map's size")
        return self


class HebbianSpec(Strict):
    """A stack of Hebbian layers trained by a local unsupervised rule; downstream tasks read the
    last layer's activity (average-pooled to a `feature_grid` square for conv layers)."""

    kind: Literal["hebbian"]
    rule: Literal["softhebb", "krotov_hopfield"] = Field(
        "softhebb", description="softhebb: soft winner-take-all with anti-Hebbian non-winners; krotov_hopfield: the "
                                "winner Hebbian, the rank-th unit anti-Hebbian, Lebesgue-p similarity.")
    layers: list[HebbianLayerSpec] = Field(min_length=1)
    adaptive_lr_power: float = Field(
        0.5, ge=0, description="softhebb: each unit's rate is scaled by |‖W_k‖ - 1|^power (0: off).")
    lebesgue_p: float = Field(3.0, ge=2, description="krotov_hopfield: p of the Lebesgue inner product.")
    rank: int = Field(2, ge=2, description="krotov_hopfield: the unit at this rank of activity is anti-Hebbian.")
    delta: float = Field(0.4, ge=0, description="krotov_hopfield: the anti-Hebbian unit's strength.")
    init_scale: float | None = Field(
        None, gt=0,
        description="Initial weights ~ N(0, scale^2 / fan_in) (None: 25, SoftHebb's large start, whose "
                    "adaptive rate then shrinks the norms to 1; krotov_hopfield uses N(0, 1) when None).")
    feature_grid: int | None = Field(
        4, gt=0, description="conv: the last map is average-pooled to grid x grid before flattening (None: as it is).")
    probe_examples: int = Field(
        10000, ge=0, description="Training examples the per-epoch linear probe (scored on validation) fits on "
                                 "(0: no per-epoch probe).")

    @model_validator(mode="after")
    def _dense_last(self) -> HebbianSpec:
        types = [layer.type for layer in self.layers]
        if "dense" in types and types[types.index("dense"):].count("conv"):
            raise ValueError("a conv layer cannot follow a dense one (the dense layer flattens its input)")
        return self

    def check_input(self, shape: tuple[int, ...]) -> None:
        convs = sum(layer.type == "conv" for layer in self.layers)
        if not convs:
            return
        if len(shape) != 3:
            raise ValueError(f"conv layers take images [channels, height, width], not inputs of shape {list(shape)}")
        side = min(shape[1:])
        halvings = sum(layer.type == "conv" and layer.pool != "none" for layer in self.layers)
        if side < 2 ** halvings:
            raise ValueError(f"{halvings} pooled conv layers halve a {shape[1]}x{shape[2]} image below one pixel")
