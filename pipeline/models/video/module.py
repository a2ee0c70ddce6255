"""PredNet and PreCNet as Lightning modules (see the package docstring for what each computes).

A network reads a video [B, T, C, H, W] one frame at a time. At step t it first predicts frame t
from its state (what it has seen of frames 0..t-1), then compares the prediction with frame t:
`rollout` returns the predictions, `forward` (the encoder's features) the top representation after
the last frame."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.data.datamodule import model_input
from pipeline.models.base import Trainable
from pipeline.models.video import PreCNetSpec, PredNetSpec
from pipeline.spec.components import TrainSpec

FRAME_BIAS = 0.1
"""The frame prediction's bias starts here, above zero: where a ReLU output starts below zero
everywhere it gets no gradient and the predicted frame stays blank."""
FEATURE_GRID = 2
"""The top representation is average-pooled to a FEATURE_GRID x FEATURE_GRID map for the features."""


class ConvLSTMCell(nn.Module):
    """A convolutional LSTM (Shi et al. 2015): one convolution of [input, R] gives the input,
    forget and output gates and the candidate cell; R = o * tanh(c)."""

    def __init__(self, in_channels: int, hidden: int, kernel: int):
        super().__init__()
        self.hidden = hidden
        self.gates = nn.Conv2d(in_channels + hidden, 4 * hidden, kernel, padding=kernel // 2)

    def forward(self, inputs: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
                ) -> tuple[torch.Tensor, torch.Tensor]:
        r, c = state
        i, f, o, g = self.gates(torch.cat([inputs, r], dim=1)).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c


def error_units(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """[ReLU(prediction - target), ReLU(target - prediction)] along channels: the positive and
    negative prediction errors as separate (non-negative) populations."""
    return torch.cat([F.relu(prediction - target), F.relu(target - prediction)], dim=1)


@dataclass
class State:
    """Each layer's representation R, its cell c and its error units E, bottom to top."""

    r: list[torch.Tensor]
    c: list[torch.Tensor]
    e: list[torch.Tensor]


@dataclass
class Step:
    """What one time step computed: the predicted frame, each layer's prediction A-hat and
    target A, and the new state."""

    frame: torch.Tensor
    predictions: list[torch.Tensor]
    targets: list[torch.Tensor]
    state: State


class PredictiveStack(nn.Module):
    """What PredNet and PreCNet share: the layer sizes, the A-hat convolutions, the initial state,
    the loop over time and the features. A subclass implements `step`."""

    def __init__(self, spec, input_shape: tuple[int, ...]):
        super().__init__()
        spec.check_input(input_shape)
        self.spec = spec
        _, channels, height, width = input_shape
        self.sizes = [(height // 2 ** level, width // 2 ** level) for level in range(spec.layers)]
        self.a_channels = spec.target_channels(channels)
        self.r_channels = list(spec.r_channels)
        pairs = zip(self.r_channels, self.a_channels, strict=True)
        self.ahat = nn.ModuleList(nn.Conv2d(r, a, spec.kernel, padding=spec.kernel // 2) for r, a in pairs)
        nn.init.constant_(self.ahat[0].bias, FRAME_BIAS)
        self.out_dim = self.r_channels[-1] * FEATURE_GRID * FEATURE_GRID
        self.power = {"l1": 1, "l2": 2}[spec.loss]

    @property
    def layers(self) -> int:
        return len(self.r_channels)

    def initial_state(self, batch: int, like: torch.Tensor) -> State:
        def zeros(channels: int, level: int) -> torch.Tensor:
            return like.new_zeros(batch, channels, *self.sizes[level])

        return State(r=[zeros(ch, lv) for lv, ch in enumerate(self.r_channels)],
                     c=[zeros(ch, lv) for lv, ch in enumerate(self.r_channels)],
                     e=[zeros(2 * ch, lv) for lv, ch in enumerate(self.a_channels)])

    def predict(self, level: int, r: torch.Tensor) -> torch.Tensor:
        """A-hat of a layer from its representation: the bottom one (the frame) ReLU and clipped to
        the pixel range."""
        out = self.ahat[level](r)
        if level == 0:
            return torch.clamp(F.relu(out), max=self.spec.pixel_max)
        return self.upper_activation(out)

    def upper_activation(self, out: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def step(self, frame: torch.Tensor | None, state: State) -> Step:
        """One time step. `frame` None: extrapolating, the network's own prediction of the frame
        stands in for it (the bottom error is then zero)."""
        raise NotImplementedError

    def run(self, frames: torch.Tensor, extrapolate_from: int | None = None
            ) -> tuple[torch.Tensor, torch.Tensor, State]:
        """Predicted frames [B, T, C, H, W] (index t: the prediction of frame t from frames < t), the
        mean of each layer's error units (or of their squares, `loss: l2`) per example and step
        [B, T, layers], and the last state.
        From step `extrapolate_from` on, the network reads its own predictions."""
        batch, length = frames.shape[:2]
        state = self.initial_state(batch, frames)
        predicted, errors = [], []
        for t in range(length):
            extrapolating = extrapolate_from is not None and t >= extrapolate_from
            out = self.step(None if extrapolating else frames[:, t], state)
            state = out.state
            predicted.append(out.frame)
            errors.append(torch.stack([e.flatten(1).pow(self.power).mean(dim=1) for e in state.e], dim=1))
        return torch.stack(predicted, dim=1), torch.stack(errors, dim=1), state

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """Features [B, out_dim]: the top representation after the last frame, average-pooled."""
        _, _, state = self.run(frames)
        return F.adaptive_avg_pool2d(state.r[-1], FEATURE_GRID).flatten(1)


class PredNetStack(PredictiveStack):
    """PredNet: R updated top-down from its own previous error and the upsampled R of the layer
    above; then, bottom-up, each layer's error, from which the next layer's target is made."""

    def __init__(self, spec: PredNetSpec, input_shape: tuple[int, ...]):
        super().__init__(spec, input_shape)
        above = [self.r_channels[level + 1] if level + 1 < self.layers else 0 for level in range(self.layers)]
        sizes = zip(self.a_channels, above, self.r_channels, strict=True)
        self.cells = nn.ModuleList(ConvLSTMCell(2 * a + up, r, spec.kernel) for a, up, r in sizes)
        self.to_target = nn.ModuleList(
            nn.Conv2d(2 * self.a_channels[level], self.a_channels[level + 1], spec.kernel, padding=spec.kernel // 2)
            for level in range(self.layers - 1))

    def upper_activation(self, out: torch.Tensor) -> torch.Tensor:
        return F.relu(out)  # the targets above are ReLU outputs

    def step(self, frame: torch.Tensor | None, state: State) -> Step:
        r, c = list(state.r), list(state.c)
        for level in reversed(range(self.layers)):
            inputs = state.e[level]
            if level + 1 < self.layers:
                inputs = torch.cat([inputs, F.interpolate(r[level + 1], scale_factor=2, mode="nearest")], dim=1)
            r[level], c[level] = self.cells[level](inputs, (state.r[level], state.c[level]))
        predictions, targets, errors = [], [], []
        target = frame
        for level in range(self.layers):
            prediction = self.predict(level, r[level])
            if target is None:  # extrapolating: the predicted frame stands in for the frame
                target = prediction
            errors.append(error_units(prediction, target))
            predictions.append(prediction)
            targets.append(target)
            if level + 1 < self.layers:
                target = F.max_pool2d(F.relu(self.to_target[level](errors[level])), 2)
        return Step(predictions[0], predictions, targets, State(r, c, errors))


class PreCNetStack(PredictiveStack):
    """PreCNet: top-down, each layer's R is updated by its top-down ConvLSTM from the error of the
    layer above (the top one from its own previous error), predicts the pooled R of the layer below
    (the frame at the bottom) and gets its error; then bottom-up, each layer's error is computed
    again against the freshly updated R below and drives its bottom-up ConvLSTM."""

    def __init__(self, spec: PreCNetSpec, input_shape: tuple[int, ...]):
        super().__init__(spec, input_shape)
        top = self.layers - 1
        td_inputs = [2 * self.a_channels[level + 1] if level < top else 2 * self.a_channels[top]
                     for level in range(self.layers)]
        sizes = zip(td_inputs, self.r_channels, strict=True)
        self.down = nn.ModuleList(ConvLSTMCell(i, r, spec.kernel) for i, r in sizes)
        self.up = nn.ModuleList(ConvLSTMCell(2 * self.a_channels[level], self.r_channels[level], spec.kernel)
                                for level in range(top))

    def upper_activation(self, out: torch.Tensor) -> torch.Tensor:
        return torch.tanh(out)  # R = o * tanh(c) lies in (-1, 1), and so does its max-pool

    def step(self, frame: torch.Tensor | None, state: State) -> Step:
        top = self.layers - 1
        r, c, e = list(state.r), list(state.c), list(state.e)
        predictions: list[torch.Tensor] = [None] * self.layers  # type: ignore[list-item]
        targets: list[torch.Tensor] = [None] * self.layers  # type: ignore[list-item]
        from_above = state.e[top]
        for level in reversed(range(self.layers)):
            r[level], c[level] = self.down[level](from_above, (state.r[level], state.c[level]))
            predictions[level] = self.predict(level, r[level])
            if level > 0:
                targets[level] = F.max_pool2d(state.r[level - 1], 2)  # the lower layer is not yet updated
            else:
                targets[0] = frame if frame is not None else predictions[0]
            e[level] = error_units(predictions[level], targets[level])
            if level > 0:
                from_above = F.interpolate(e[level], scale_factor=2, mode="nearest")
        for level in range(self.layers):
            if level > 0:
                targets[level] = F.max_pool2d(r[level - 1], 2)
                e[level] = error_units(predictions[level], targets[level])
            if level < top:
                r[level], c[level] = self.up[level](e[level], (r[level], c[level]))
        return Step(predictions[0], predictions, targets, State(r, c, e))


def prediction_loss(errors: torch.Tensor, layer_weights: list[float]) -> torch.Tensor:
    """The training loss from each layer's mean error [B, T, layers]: weighted over layers, averaged
    over steps 1..T-1 (the first frame has nothing to be predicted from, weight 0) and examples."""
    weights = errors.new_tensor(layer_weights)
    time = errors.new_ones(errors.shape[1])
    time[0] = 0
    time = time / time.sum().clamp(min=1)
    return (errors * weights).sum(dim=2).mul(time).sum(dim=1).mean()


def mse_per_frame(predicted: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    """Squared error summed over a frame's pixels, averaged over frames 1..T-1 and examples (the
    OpenSTL convention, intensities in [0, 1])."""
    return (predicted[:, 1:] - frames[:, 1:]).pow(2).flatten(2).sum(dim=2).mean()


class VideoPredictor(Trainable):
    """A predictive-coding video network trained on its own error units. Validation reports the
    next-frame MSE per frame beside copy-last-frame's."""

    stack_class: type[PredictiveStack]
    validation_metric = "val/mse_per_frame"

    def __init__(self, model: PredNetSpec | PreCNetSpec, train: TrainSpec, input_shape: tuple[int, ...],
                 num_classes: int):
        super().__init__(self.stack_class(model, tuple(input_shape)), train)
        self.model_spec = model
        self.layer_weights = model.weights()

    def rollout(self, frames: torch.Tensor, extrapolate_from: int | None = None) -> torch.Tensor:
        """Predictions [B, T, C, H, W] of frames [B, T, C, H, W] in [0, 1]: index t predicts frame t
        from frames < t (from `extrapolate_from` on, from the network's own predictions)."""
        return self.encoder.run(frames, extrapolate_from)[0]

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        frames = model_input(batch["input"])
        _, errors, _ = self.encoder.run(frames)
        loss = prediction_loss(errors, self.layer_weights)
        size = len(frames)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=size, sync_dist=True)
        for level in range(errors.shape[2]):
            self.log(f"train/error_layer{level}", errors[:, 1:, level].mean(), on_step=False, on_epoch=True,
                     batch_size=size, sync_dist=True)
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        frames = model_input(batch["input"])
        predicted, errors, _ = self.encoder.run(frames)
        size = len(frames)
        self.log("val/loss", prediction_loss(errors, self.layer_weights), on_epoch=True, batch_size=size,
                 sync_dist=True)
        self.log("val/mse_per_frame", mse_per_frame(predicted, frames), on_epoch=True, prog_bar=True,
                 batch_size=size, sync_dist=True)
        copy_last = torch.cat([frames[:, :1], frames[:, :-1]], dim=1)
        self.log("val/copy_last_mse_per_frame", mse_per_frame(copy_last, frames), on_epoch=True, batch_size=size,
                 sync_dist=True)

    def plot_groups(self) -> dict[str, tuple[str, list[str]]]:
        return {"training_curves": ("prediction error", ["train/loss_epoch", "val/loss"]),
                "next_frame_mse": ("next-frame MSE per frame (validation)",
                                   ["val/mse_per_frame", "val/copy_last_mse_per_frame"])}


class PredNet(VideoPredictor):
    stack_class = PredNetStack


class PreCNet(VideoPredictor):
    stack_class = PreCNetStack
