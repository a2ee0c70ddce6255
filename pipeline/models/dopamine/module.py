"""The two populations of TD value units as a Lightning module: each training batch is a run of
trials, learnt one after another (TD is sequential); the values are buffers, so the weight file
holds them and a checkpoint resumes them."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from pipeline.models.base import Trainable
from pipeline.models.dopamine import DistributionalTDSpec
from pipeline.spec.components import TrainSpec

POPULATIONS = ("distributional", "classical")


class ValueUnits(nn.Module):
    """Values [populations, cues, units] and asymmetries [populations, units]; its features are
    the values of a trial's cue, both populations side by side."""

    def __init__(self, spec: DistributionalTDSpec, cues: int):
        super().__init__()
        taus = torch.stack([torch.linspace(spec.tau_low, spec.tau_high, spec.units), torch.full((spec.units,), 0.5)])
        self.register_buffer("taus", taus.double())
        self.register_buffer("values", torch.zeros(len(POPULATIONS), cues, spec.units, dtype=torch.float64))
        self.out_dim = len(POPULATIONS) * spec.units

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        cues = inputs.argmax(dim=1)
        return self.values[:, cues].permute(1, 0, 2).flatten(1).float()


class DistributionalTD(Trainable):
    """See `pipeline.models.dopamine`."""

    validation_metric = "train/value_spread"

    def __init__(self, spec: DistributionalTDSpec, train: TrainSpec, input_shape: tuple[int, ...], num_classes: int):
        if len(input_shape) != 1:
            raise ValueError(f"trials' cues are one-hot vectors, not inputs of shape {list(input_shape)}")
        if not spec.tau_low < spec.tau_high:
            raise ValueError(f"tau_low ({spec.tau_low}) must be below tau_high ({spec.tau_high})")
        super().__init__(ValueUnits(spec, input_shape[0]), train)
        self.spec = spec
        self.automatic_optimization = False  # TD updates the values itself
        self.clock = nn.Parameter(torch.zeros(1), requires_grad=False)  # what the inert optimiser holds

    @property
    def taus(self) -> np.ndarray:
        return self.encoder.taus[0].numpy()

    @property
    def values(self) -> np.ndarray:
        return self.encoder.values.numpy()

    def learn(self, cues: np.ndarray, rewards: np.ndarray) -> np.ndarray:
        """TD on each trial in order, both populations at once; the prediction errors [trials,
        populations, units] before each update."""
        values = self.encoder.values.numpy()  # shares the buffer's memory: updated in place
        taus = self.encoder.taus.numpy()
        rate = self.spec.learning_rate
        errors = np.empty((len(cues), *taus.shape))
        for trial, (cue, reward) in enumerate(zip(cues, rewards, strict=True)):
            error = reward - values[:, cue]
            errors[trial] = error
            step = error if self.spec.update == "expectile" else np.sign(error)
            values[:, cue] += rate * np.where(error > 0, taus, 1 - taus) * step
        return errors

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """An inert optimiser (learning rate 0) that counts one step per batch for Lightning."""
        return torch.optim.SGD([self.clock], lr=0.0)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        cues = batch["input"].argmax(dim=1).cpu().numpy()
        errors = self.learn(cues, batch["reward"].cpu().double().numpy())
        self.optimizers().step()
        size = len(cues)
        self.log("train/loss", float(np.mean(errors[:, 0] ** 2)), on_step=True, on_epoch=True, batch_size=size)
        values = self.values[0]  # [cues, units]
        self.log("train/value_spread", float(values.std(axis=1).mean()), on_step=True, on_epoch=True, batch_size=size)
        self.log("train/mean_value", float(values.mean()), on_step=True, on_epoch=True, batch_size=size)

    def responses(self, cues: np.ndarray, rewards: np.ndarray, generator: np.random.Generator,
                  noise_scale: float = 1.0) -> np.ndarray:
        """Each population's responses [populations, trials, units] with learning frozen: the
        prediction error scaled by the unit's own rate for its sign (alpha+ / alpha = tau, alpha- /
        alpha = 1 - tau), plus Gaussian noise of response_noise x `noise_scale`."""
        errors = rewards[None, :, None] - self.values[:, cues]  # [P, trials, units]
        taus = self.encoder.taus.numpy()[:, None, :]
        scaled = np.where(errors > 0, taus, 1 - taus) * errors
        return scaled + generator.normal(0, self.spec.response_noise * noise_scale, scaled.shape)

    def cue_responses(self, cues: np.ndarray, generator: np.random.Generator, noise_scale: float = 1.0) -> np.ndarray:
        """Each population's response to each trial's cue [populations, trials, units]: the value it
        predicts, plus the same noise."""
        values = self.values[:, cues]
        return values + generator.normal(0, self.spec.response_noise * noise_scale, values.shape)

    def plot_groups(self) -> dict[str, tuple[str, list[str]]]:
        return {"training_curves": ("the distributional units' values while learning",
                                    ["train/mean_value_step", "train/value_spread_step", "train/loss_step"])}
