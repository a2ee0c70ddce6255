"""The network's test accuracy as noise grows on its inputs. Gaussian noise: at each level the
noise's standard deviation is level x s, s the standard deviation of the training inputs' values,
so a level reads the same on any data. Pixel noise (Ahmad & Scheinkman 2019): at each level that
share of each example's values, drawn at random, is set to one value. The noise score is theirs:
the test examples classified correctly, summed over the levels. It goes on the value channels only: a time channel
(`elapsed_time: last_channel`, the time since the previous sample) is left as it is, since
perturbing it would be another experiment (jittered sampling times), and one the discrete kinds
could not be compared on.

Each level's draws are seeded by the spec's seed and the level's index (and the split), so the
curve is reproducible and every model trained with the same seed meets the same noise."""

from __future__ import annotations

import numpy as np
import torch

from pipeline import plots
from pipeline.data.datamodule import model_input
from pipeline.evaluators.context import Context, Headline, TaskResult

BATCH = 256
PIXEL_VALUE = 0.75
"""Pixel noise's default value (images in [0, 1]): about Ahmad & Scheinkman's, 2 MNIST standard
deviations above its mean."""


def value_channels(ctx: Context) -> int:
    """How many leading input channels hold values: all, less the trailing ones that hold times
    where the model spec says it reads some (`time_channels`)."""
    return ctx.splits.input_shape[0] - getattr(ctx.spec.model, "time_channels", 0)


def generator(seed: int, level_index: int, split: str) -> torch.Generator:
    """The noise stream of one level on one split: independent of every other (SeedSequence mixes
    the three numbers), the same in every run."""
    entropy = [seed, level_index, ("test", "val").index(split)]
    return torch.Generator().manual_seed(int(np.random.SeedSequence(entropy).generate_state(1)[0]))


@torch.no_grad()
def accuracy(model, inputs: torch.Tensor, labels: torch.Tensor, device: str) -> float:
    predicted = torch.cat([model.predict(inputs[start:start + BATCH].to(device)).cpu()
                           for start in range(0, len(inputs), BATCH)])
    return (predicted == labels).sum().item() / len(labels)


def with_gaussian_noise(inputs: torch.Tensor, values: int, std: float, noise: torch.Generator) -> torch.Tensor:
    """A copy of `inputs` (float, as the model reads them) with N(0, std^2) noise on its first
    `values` channels."""
    noisy = inputs.clone()
    noisy[:, :values] += std * torch.randn(noisy[:, :values].shape, generator=noise)
    return noisy


def with_pixels_set(inputs: torch.Tensor, values: int, share: float, value: float,
                    noise: torch.Generator) -> torch.Tensor:
    """A copy of `inputs` with round(share x n) of each example's n values (in its first `values`
    channels), drawn at random without replacement, set to `value`."""
    noisy = inputs.clone()
    region = noisy[:, :values].reshape(len(noisy), -1)
    count = round(share * region.shape[1])
    if count:
        chosen = torch.rand(region.shape, generator=noise).argsort(dim=1)[:, :count]
        region.scatter_(1, chosen, value)
        noisy[:, :values] = region.view_as(noisy[:, :values])
    return noisy


def mean_accuracy(model, inputs: torch.Tensor, labels: torch.Tensor, corrupt, repeats: int, device: str) -> float:
    """Mean accuracy over `repeats` draws of `corrupt(inputs)`; one clean pass where `corrupt` is
    None (no noise)."""
    if corrupt is None:
        return accuracy(model, inputs, labels, device)
    return sum(accuracy(model, corrupt(inputs), labels, device) for _ in range(repeats)) / repeats


def area(levels: list[float], accuracies: list[float]) -> float:
    """The mean accuracy over the range of levels: the trapezoid area under the curve divided by
    the range (the one accuracy where there is a single level)."""
    if levels[-1] == levels[0]:
        return accuracies[0]
    under = sum((a + b) / 2 * (right - left) for left, right, a, b
                in zip(levels, levels[1:], accuracies, accuracies[1:], strict=False))
    return under / (levels[-1] - levels[0])


def run(task, ctx: Context) -> TaskResult:
    model = ctx.trained.eval().to(ctx.device)
    values = value_channels(ctx)
    scale = model_input(ctx.splits.train["input"])[:, :values].std().item()
    levels = sorted(set(task.levels))
    largest = levels[-1]

    def at(split: str, index: int, level: float) -> float:
        inputs, labels = ctx.split(split)
        noise = generator(ctx.spec.seed, index, split)
        if level == 0:
            corrupt = None
        elif task.noise == "pixels":
            value = PIXEL_VALUE if task.pixel_value is None else task.pixel_value
            corrupt = lambda x: with_pixels_set(x, values, level, value, noise)  # noqa: E731
        else:
            corrupt = lambda x: with_gaussian_noise(x, values, level * scale, noise)  # noqa: E731
        return mean_accuracy(model, model_input(inputs), labels, corrupt, task.repeats, ctx.device)

    curve = [at("test", index, level) for index, level in enumerate(levels)]
    metrics = {f"accuracy_noise_{level:g}": value for level, value in zip(levels, curve, strict=True)}
    metrics["area"] = area(levels, curve)
    metrics["noise_score"] = sum(curve) * len(ctx.split("test")[1])  # Ahmad & Scheinkman's: correct, summed
    clean = curve[0] if levels[0] == 0 else at("test", 0, 0.0)
    for index, (level, value) in enumerate(zip(levels, curve, strict=True)):
        ctx.log_series({"noise_robustness/noise_level": level, "noise_robustness/accuracy_curve": value}, step=index)
    validation, clean_val = None, None
    if ctx.has_validation:  # what the spec's settings may be chosen on; the test split is scored once
        validation = metrics[f"accuracy_val_noise_{largest:g}"] = at("val", len(levels) - 1, largest)
        clean_val = metrics["accuracy_val_noise_0"] = at("val", 0, 0.0)
    picture = plots.lines({"test split": list(zip(levels, curve, strict=True))},
                          f"{ctx.spec.name}: accuracy under input noise (area {metrics['area']:.1%})",
                          "share of pixels set" if task.noise == "pixels" else
                          "noise standard deviation (x the training inputs')", "accuracy",
                          ctx.out / "noise_robustness.png")
    name = f"accuracy with {largest:.0%} of pixels set" if task.noise == "pixels" else f"accuracy at noise {largest:g}x"
    return TaskResult(metrics, [picture], Headline(
        name, curve[-1], {"no noise": clean}, validation=validation,
        baselines_validation={"no noise": clean_val} if ctx.has_validation else {}))
