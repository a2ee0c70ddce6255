"""A feed-forward classifier family (an MLP or a small CNN) trained by backpropagation or by
predictive coding (Whittington & Bogacz 2017; Millidge, Tschantz & Buckley 2020; Song et al.
2020; Rosenbaum 2022). The spec, pure pydantic; the network and the learning rules are in
`module.py`.

Layers l = 1..L, each a prediction mu_l = f_l(x_{l-1}; W_l) (a Linear or a 3x3 Conv2d with its
activation; the last layer, a Linear without one, gives the logits). Predictive coding gives
every layer a value node x_l and an error e_l = x_l - mu_l, and minimises the energy
    F = loss(mu_L, y) + sum_{l<L} 1/2 ||e_l||^2,
the output's error being e_L = -d loss / d mu_L (with the squared loss, y - mu_L: x_L clamped to
the one-hot target; with the cross-entropy, y - softmax(mu_L), the cross-entropy's equivalent of
clamping). A training step: x_0 clamped to the input, the hidden x_l initialised by a forward
pass (so every hidden error starts at 0), then `inference_steps` steps of gradient descent on F
over the hidden x_l, dx_l = inference_lr * (-e_l + J_{l+1}^T e_{l+1}) (J_{l+1} the Jacobian of
f_{l+1} at x_l), then for every layer the update -dF/dW_l = (df_l/dW_l)^T e_l, from its own
error and input alone: no backward pass through the network. Inference is gradient descent on
each example's F; a step that would raise it (the step too large for the curvature, which grows
with the weights during training) is undone and that example's step size halved.

`fixed_prediction` (Millidge et al. 2020): the predictions mu_l (and the Jacobians) stay at their
forward-pass values during inference. With inference_lr 1 and inference_steps >= L - 1 the
errors then equal backprop's gradients of the loss with respect to each layer's output, and the
weight updates equal backprop's gradients exactly. Off, the predictions are recomputed from the
relaxing x_l at every step (standard predictive coding): the updates only approximate
backprop's, the closer the smaller the output's error.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from pipeline.spec.components import Strict


class FeedforwardSpec(Strict):
    """A feed-forward classifier: `mlp`, fully connected layers of `widths` units on the flattened
    input; or `cnn`, per entry of `widths` a 3x3 conv (padding 1) -> activation -> 2x2 average pool,
    then the flattened map. Both end in a linear layer to the classes; the features downstream
    tasks read are the last hidden layer's (flattened) activities."""

    kind: Literal["feedforward"]
    architecture: Literal["mlp", "cnn"] = Field(
        "mlp", description="mlp: fully connected hidden layers; cnn: conv -> activation -> 2x2 average-pool blocks.")
    widths: list[int] = Field(
        [256, 256], min_length=1,
        description="mlp: units of each hidden layer; cnn: channels of each conv block. Weight layers: "
                    "len(widths) + 1.")
    activation: Literal["tanh", "relu", "gelu", "sigmoid"] = "tanh"
    learning: Literal["backprop", "predictive_coding"] = Field(
        "predictive_coding",
        description="backprop: the network trained by ordinary backpropagation of `output_loss` (the baseline); "
                    "predictive_coding: inference over the value nodes, then local weight updates.")
    output_loss: Literal["cross_entropy", "squared"] = Field(
        "cross_entropy",
        description="The loss on the logits, which backprop minimises and which is predictive coding's output "
                    "energy. squared: 1/2 ||logits - one_hot||^2 (the output node clamped to the one-hot target); "
                    "cross_entropy: softmax cross-entropy (the output error is one_hot - softmax(logits)).")
    inference_steps: int = Field(
        20, gt=0, description="predictive_coding: T, the gradient steps on the energy over the hidden value nodes.")
    inference_lr: float = Field(
        0.2, gt=0, le=1,
        description="predictive_coding: the step size of inference. Each node's own error term has curvature 1, "
                    "so above 1 a step overshoots; standard predictive coding halves an example's step where "
                    "one would raise its energy.")
    fixed_prediction: bool = Field(
        False,
        description="predictive_coding: keep the predictions (and their Jacobians) at the forward pass's values "
                    "during inference (Millidge et al. 2020); with inference_lr 1 and inference_steps >= "
                    "len(widths) the updates equal backprop's gradients exactly. false: standard predictive "
                    "coding, predictions recomputed from the relaxing nodes at every step.")

    @model_validator(mode="after")
    def _positive_widths(self) -> FeedforwardSpec:
        if any(w <= 0 for w in self.widths):
            raise ValueError(f"widths must all be > 0 (got {self.widths})")
        return self

    @property
    def depth(self) -> int:
        """Weight layers: the hidden ones and the output layer."""
        return len(self.widths) + 1

    def check_input(self, shape: tuple[int, ...]) -> None:
        if self.architecture == "mlp":
            return  # any input, flattened
        if len(shape) != 3:
            raise ValueError(f"architecture: cnn takes images [channels, height, width], not inputs of shape "
                             f"{list(shape)}")
        side = min(shape[1:])
        if side < 2 ** len(self.widths):
            raise ValueError(f"architecture: cnn with {len(self.widths)} blocks halves the image {len(self.widths)} "
                             f"times, more than a {shape[1]}x{shape[2]} image allows (at most "
                             f"{max(0, side.bit_length() - 1)} blocks)")
