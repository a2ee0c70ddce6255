"""Scoring video prediction, shared by the next_frame and extrapolation tasks.

Frames are indexed t = 0..T-1 as the model's `rollout` indexes them: predictions[:, t] is its
prediction of frame t from the frames before it (from frames 0..k-1 only, where it runs on its
own predictions from step k on: `extrapolate_from=k`). The frames from `first` on are scored (1
for next-frame prediction, the context length for extrapolation), each figure averaged over the
scored frames of every sequence:

- mse_per_frame: the squared error summed over a frame's C*H*W pixels, intensities in [0, 1]
  (the convention of the Moving MNIST literature, e.g. OpenSTL);
- mse_per_pixel: the same divided by C*H*W;
- psnr: per frame, for a data range of 1 (torchmetrics);
- ssim: per frame, torchmetrics' Gaussian window (11 px, sigma 1.5), data range 1.

PSNR and SSIM read the predictions clipped to [0, 1], the range they assume; the MSEs read them as
they are. The copy-last-frame baseline (frame t predicted by frame t - 1; while extrapolating,
frame k - 1, the last one read, repeated) is scored in the same pass, on the same frames."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from pipeline import plots
from pipeline.data.datamodule import model_input
from pipeline.errors import PipelineError
from pipeline.evaluators.context import Context, Headline, TaskResult

METRICS = ("mse_per_frame", "mse_per_pixel", "psnr", "ssim")
METHODS = {"": "model", "copy_last_": "copy last frame"}
"""Each method's metric-name prefix, and its name in the pictures and the headline."""
CURVES = {"mse_per_frame": "MSE per frame", "ssim": "SSIM"}
"""The figures drawn frame by frame."""


def check_videos(ctx: Context, kind: str) -> None:
    shape = ctx.splits.input_shape
    if len(shape) != 4:
        raise PipelineError(f"{ctx.spec.name}: {kind}: it scores videos (examples of shape [frames, channels, "
                            f"height, width]), not examples of shape {list(shape)}")


def copy_last(frames: torch.Tensor, extrapolate_from: int | None = None) -> torch.Tensor:
    """The baseline's predictions of videos [B, T, C, H, W]: frame t - 1 for frame t (frame 0,
    never scored, for itself); from step k = `extrapolate_from` on, frame k - 1."""
    copied = torch.cat([frames[:, :1], frames[:, :-1]], dim=1)
    if extrapolate_from is not None:
        copied[:, extrapolate_from:] = frames[:, extrapolate_from - 1:extrapolate_from]
    return copied


def rollout(model, frames: torch.Tensor, extrapolate_from: int | None) -> torch.Tensor:
    """The model's predictions of videos [B, T, C, H, W] in [0, 1], as float32."""
    predicted = model.rollout(frames, extrapolate_from=extrapolate_from)
    if predicted.shape != frames.shape:
        raise ValueError(f"{type(model).__name__}.rollout returned shape {list(predicted.shape)} for frames of shape "
                         f"{list(frames.shape)}; the video tasks expect a prediction of every frame, the same shape")
    return predicted.float()


def frame_scores(predicted: torch.Tensor, true: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each figure of each frame [B, S] of predicted frames against true ones [B, S, C, H, W]."""
    batch, steps = true.shape[:2]
    squared = (predicted - true).square().flatten(2).sum(dim=2)
    clipped, images = predicted.clamp(0, 1).flatten(0, 1), true.flatten(0, 1)
    psnr = peak_signal_noise_ratio(clipped, images, data_range=1.0, reduction="none", dim=(1, 2, 3))
    ssim = structural_similarity_index_measure(clipped, images, data_range=1.0, reduction="none")
    return {"mse_per_frame": squared, "mse_per_pixel": squared / true[0, 0].numel(),
            "psnr": psnr.view(batch, steps), "ssim": ssim.view(batch, steps)}


@dataclass(frozen=True)
class Scores:
    """One method's figures on one split: each metric at each scored frame, averaged over the
    sequences."""

    steps: list[int]
    per_step: dict[str, np.ndarray]
    sequences: int

    def overall(self) -> dict[str, float]:
        """Each figure averaged over the scored frames of every sequence (each sequence has all of
        them, so this is the mean of the per-frame means)."""
        return {metric: float(values.mean()) for metric, values in self.per_step.items()}


@torch.no_grad()
def score(model, inputs: torch.Tensor, first: int, extrapolate_from: int | None, batch_size: int,
          device: str) -> dict[str, Scores]:
    """The model's and the copy-last baseline's figures (by metric prefix) on videos uint8
    [N, T, C, H, W], frames from `first` on, `batch_size` sequences at a time."""
    length = inputs.shape[1]
    totals = {prefix: {metric: torch.zeros(length - first, dtype=torch.float64) for metric in METRICS}
              for prefix in METHODS}
    for start in range(0, len(inputs), batch_size):
        frames = model_input(inputs[start:start + batch_size].to(device))
        predicted = {"": rollout(model, frames, extrapolate_from), "copy_last_": copy_last(frames, extrapolate_from)}
        for prefix, predictions in predicted.items():
            for metric, values in frame_scores(predictions[:, first:], frames[:, first:]).items():
                totals[prefix][metric] += values.double().sum(dim=0).cpu()
    return {prefix: Scores(list(range(first, length)), {metric: (total / len(inputs)).numpy()
                                                        for metric, total in sums.items()}, len(inputs))
            for prefix, sums in totals.items()}


@torch.no_grad()
def strips(model, inputs: torch.Tensor, count: int, first: int, extrapolate_from: int | None, seed: int,
           title: str, prefix: Path, device: str) -> list[Path]:
    """Pictures of `count` sequences drawn (seeded) from videos uint8 [N, T, C, H, W]: true frames,
    predicted frames and their error, as <prefix>_sequence_<index>.png."""
    chosen = np.sort(np.random.default_rng(seed).choice(len(inputs), size=min(count, len(inputs)), replace=False))
    if not len(chosen):
        return []
    frames = model_input(inputs[torch.from_numpy(chosen)].to(device))
    predicted = {"": rollout(model, frames, extrapolate_from), "copy_last_": copy_last(frames, extrapolate_from)}
    error = {p: (x[:, first:] - frames[:, first:]).square().flatten(2).sum(dim=2).mean(dim=1).cpu()
             for p, x in predicted.items()}
    true, model_frames = frames.cpu().numpy(), predicted[""].cpu().numpy()
    return [plots.frame_strip(true[i], model_frames[i], first,
                              f"{title}, test sequence {index}: MSE per frame {error[''][i]:.3g} "
                              f"(copy last frame {error['copy_last_'][i]:.3g})",
                              prefix.with_name(f"{prefix.name}_sequence_{index}.png"))
            for i, index in enumerate(chosen.tolist())]


def prediction_task(task, ctx: Context, kind: str, first: int, extrapolate_from: int | None, label: str,
                    what: str) -> TaskResult:
    """A video-prediction task's results: its figures on the test split (and validation, where
    there is one) beside the copy-last baseline's, per-frame curves (a PNG and MLflow series, step
    t the frame), frame strips and the headline (MSE per frame, lower is better). `kind` names its
    files and series; `what` says in the pictures what was predicted from what."""
    check_videos(ctx, kind)
    model = ctx.trained.eval().to(ctx.device)

    def scored(split: str) -> dict[str, Scores]:
        inputs = getattr(ctx.splits, split)["input"][:task.max_sequences]
        return score(model, inputs, first, extrapolate_from, task.batch_size, ctx.device)

    test = scored("test")
    metrics = {"sequences": float(test[""].sequences)}
    for prefix, scores in test.items():
        metrics.update({f"{prefix}{metric}": value for metric, value in scores.overall().items()})
    if ctx.has_validation:  # what the spec's settings may be chosen on; the test split is scored once
        for prefix, scores in scored("val").items():
            metrics.update({f"{prefix}{metric}_val": value for metric, value in scores.overall().items()})

    steps = test[""].steps
    for index, step in enumerate(steps):
        ctx.log_series({f"{kind}/{prefix}{metric}_at_frame": float(scores.per_step[metric][index])
                        for prefix, scores in test.items() for metric in METRICS}, step=step)
    curves = plots.line_panels(
        {title: {METHODS[prefix]: list(zip(steps, scores.per_step[metric].tolist(), strict=True))
                 for prefix, scores in test.items()} for metric, title in CURVES.items()},
        f"{ctx.spec.name}: {kind}, {what} ({test[''].sequences} test sequences; MSE per frame "
        f"{metrics['mse_per_frame']:.3g}, copy last frame {metrics['copy_last_mse_per_frame']:.3g})",
        "frame t (the first is 0)", ctx.out / f"{kind}_per_frame.png")
    drawn = strips(model, ctx.splits.test["input"][:task.max_sequences], task.strips, first, extrapolate_from,
                   ctx.spec.seed, f"{ctx.spec.name}: {kind}, {what}", ctx.out / kind, ctx.device)

    baselines = {name: prefix for prefix, name in METHODS.items() if prefix}
    return TaskResult(metrics, [curves, *drawn], Headline(
        label, metrics["mse_per_frame"],
        {name: metrics[f"{prefix}mse_per_frame"] for name, prefix in baselines.items()}, unit="MSE",
        validation=metrics.get("mse_per_frame_val"),
        baselines_validation={name: metrics[f"{prefix}mse_per_frame_val"] for name, prefix in baselines.items()}
        if ctx.has_validation else {}))
