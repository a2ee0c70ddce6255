"""Forecasting a series: the normalised root-mean-square error (NRMSE: RMSE over the standard
deviation of the true values scored) of the model's one-step and free-running predictions,
beside persistence (the last value) and ridge regression on `lags` lagged values, scored on
the same positions.

The data are windows of one long series, each with the next value at every step as its
`target`. The test windows are contiguous and in order (window i+1's input starts where window
i's target ends), so the test series is theirs joined; the training windows are a random split
of theirs (validation carved out by a seeded permutation), so the ridge baseline is fitted on
each training window on its own, and validation is scored window by window.

- one-step: each method reads a window's true values and predicts the next at every step; the
  first `lags` steps of each window are left out for every method (the ridge baseline needs
  `lags` values of the window; a recurrent model starts each window from rest and settles);
- free-running: from `starts` evenly spaced points t0 of the test series, each method reads the
  `warmup` true values before t0, then predicts `horizon` steps, feeding its own predictions
  back (persistence repeats the value before t0)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pipeline import plots
from pipeline.data.datamodule import Fields, model_input
from pipeline.errors import PipelineError
from pipeline.evaluators.context import Context, Headline, TaskResult

BATCH = 256
PICTURED = 3
"""Free-running trials drawn."""


def windows_of(fields: Fields) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, targets) of a split's windows as float64 [N, L] (the series' one channel)."""
    inputs, targets = (model_input(fields[name])[:, 0].double().numpy() for name in ("input", "target"))
    return inputs, targets


def series_of(inputs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """The series contiguous windows were cut from: their inputs in order, then the last target's
    last value. Refused where the windows do not continue one another."""
    if not (np.allclose(targets[:, :-1], inputs[:, 1:]) and np.allclose(targets[:-1, -1], inputs[1:, 0])):
        raise ValueError("the test windows are not one series cut in order (each target the next input value, "
                         "each window starting where the previous one's target ends): the forecast task "
                         "rebuilds the test series from them")
    return np.concatenate([inputs.reshape(-1), targets[-1, -1:]])


def lagged(inputs: np.ndarray, lags: int) -> np.ndarray:
    """Each window's runs of `lags` consecutive values, oldest first, one ending at each step from
    `lags - 1` on: [N, L - lags + 1, lags]."""
    return np.lib.stride_tricks.sliding_window_view(inputs, lags, axis=1)


@dataclass(frozen=True)
class Ridge:
    """The next value as a linear function of the last `lags` values (oldest first) plus a bias."""

    weights: np.ndarray
    bias: float

    @classmethod
    def fit(cls, inputs: np.ndarray, targets: np.ndarray, lags: int, strength: float) -> Ridge:
        """Closed-form ridge regression on every run of `lags` values inside each training window
        [N, L] (none straddles two windows, which need not be neighbours): `strength` is added to
        the diagonal of the centred rows' Gram matrix, so the bias is not shrunk."""
        rows = lagged(inputs, lags).reshape(-1, lags)
        next_values = targets[:, lags - 1:].reshape(-1)
        mean_rows, mean_next = rows.mean(axis=0), next_values.mean()
        centred = rows - mean_rows
        weights = np.linalg.solve(centred.T @ centred + strength * np.eye(lags), centred.T @ (next_values - mean_next))
        return cls(weights, float(mean_next - mean_rows @ weights))

    @property
    def lags(self) -> int:
        return len(self.weights)

    def one_step(self, inputs: np.ndarray) -> np.ndarray:
        """Next-value predictions [N, L] of windows [N, L]; NaN where a window holds fewer than
        `lags` values yet."""
        predicted = np.full(inputs.shape, np.nan)
        predicted[:, self.lags - 1:] = lagged(inputs, self.lags) @ self.weights + self.bias
        return predicted

    def free_run(self, history: np.ndarray, steps: int) -> np.ndarray:
        """[B, steps]: after the true values `history` [B, >= lags], each next value predicted from
        the last `lags` values, its own predictions included."""
        window = history[:, -self.lags:].copy()
        predicted = np.empty((len(history), steps))
        for step in range(steps):
            predicted[:, step] = window @ self.weights + self.bias
            window = np.concatenate([window[:, 1:], predicted[:, step:step + 1]], axis=1)
        return predicted


@torch.no_grad()
def batched(predict, name: str, inputs: torch.Tensor, length: int, device: str) -> np.ndarray:
    """A model method `name` [B, 1, W] -> [B, 1, length] over inputs [N, 1, W] in batches, as
    float64 [N, length] on the CPU."""
    out = []
    for start in range(0, len(inputs), BATCH):
        batch = model_input(inputs[start:start + BATCH].to(device))
        predicted = predict(batch)
        if predicted.shape != (len(batch), 1, length):
            raise ValueError(f"{name} returned shape {list(predicted.shape)} for inputs of shape {list(batch.shape)}; "
                             f"the forecast task expects [{len(batch)}, 1, {length}]")
        out.append(predicted[:, 0].double().cpu())
    return torch.cat(out).numpy()


def nrmse(predicted: np.ndarray, true: np.ndarray) -> float:
    """Root-mean-square error over the standard deviation of the true values scored."""
    return float(np.sqrt(np.mean((predicted - true) ** 2)) / np.std(true))


def one_step(model, ridge: Ridge, fields: Fields, skip: int, device: str) -> dict[str, float]:
    """Each method's one-step NRMSE on a split's windows (by its metric prefix), steps from `skip` on."""
    inputs, targets = windows_of(fields)
    predicted = {"": batched(model.predict_next, "predict_next", fields["input"], inputs.shape[1], device),
                 "persistence_": inputs, "ridge_": ridge.one_step(inputs)}
    return {prefix: nrmse(p[:, skip:], targets[:, skip:]) for prefix, p in predicted.items()}


def check(task, ctx: Context) -> None:
    """Refuses settings the data cannot serve, saying which to change."""
    window = ctx.splits.input_shape[-1]
    length = len(ctx.splits.test["input"]) * window + 1  # of the test series
    problem = None
    if ctx.splits.input_shape != (1, window):
        problem = f"it forecasts a series of one channel, not windows of shape {list(ctx.splits.input_shape)}"
    elif task.lags >= window:
        problem = (f"forecast.lags ({task.lags}) must be below the window length ({window}): the ridge baseline "
                   f"reads `lags` values of one window")
    elif task.warmup < task.lags:
        problem = (f"forecast.warmup ({task.warmup}) must be at least forecast.lags ({task.lags}): the ridge "
                   f"baseline reads its lags from the warmup")
    elif task.warmup + task.horizon > length:
        problem = (f"the test series ({length} values) is shorter than forecast.warmup + forecast.horizon "
                   f"({task.warmup} + {task.horizon})")
    if problem:
        raise PipelineError(f"{ctx.spec.name}: forecast: {problem}")


def picture(series: np.ndarray, starts: np.ndarray, free: dict[str, np.ndarray], task, title: str,
            path: Path) -> Path:
    """A few of the free-running trials, evenly spread over the test series: the true values
    (from up to `horizon` steps before t0), the model's and the ridge baseline's forecasts."""
    shown = min(task.warmup, task.horizon)
    trials = []
    for i in np.unique(np.linspace(0, len(starts) - 1, min(PICTURED, len(starts))).round().astype(int)):
        t0 = int(starts[i])
        ahead = np.arange(t0, t0 + task.horizon)
        trials.append((t0, {"true": (np.arange(t0 - shown, t0 + task.horizon), series[t0 - shown:t0 + task.horizon]),
                            "model": (ahead, free[""][i]), "ridge on lags": (ahead, free["ridge_"][i])}))
    return plots.free_running(trials, title, path)


def run(task, ctx: Context) -> TaskResult:
    check(task, ctx)
    model = ctx.trained.eval().to(ctx.device)
    series = series_of(*windows_of(ctx.splits.test))
    ridge = Ridge.fit(*windows_of(ctx.splits.train), task.lags, task.ridge)
    skip = task.lags  # min(lags, L - 1): lags is below the window length L (checked)

    metrics = {f"{prefix}nrmse_one_step": value
               for prefix, value in one_step(model, ridge, ctx.splits.test, skip, ctx.device).items()}
    if ctx.has_validation:  # what the spec's settings may be chosen on; the test split is scored once
        metrics.update({f"{prefix}nrmse_one_step_val": value
                        for prefix, value in one_step(model, ridge, ctx.splits.val, skip, ctx.device).items()})

    starts = np.unique(np.linspace(task.warmup, len(series) - task.horizon, task.starts).round().astype(int))
    history = np.stack([series[t0 - task.warmup:t0] for t0 in starts])
    true = np.stack([series[t0:t0 + task.horizon] for t0 in starts])
    free = {"": batched(lambda x: model.generate(x, task.horizon), "generate",
                        torch.from_numpy(history[:, None]).float(), task.horizon, ctx.device),
            "persistence_": np.repeat(history[:, -1:], task.horizon, axis=1),
            "ridge_": ridge.free_run(history, task.horizon)}
    metrics.update({f"{prefix}nrmse_free_running": nrmse(p, true) for prefix, p in free.items()})
    drawn = picture(series, starts, free, task,
                    f"{ctx.spec.name}: free-running forecasts over {task.horizon} steps (NRMSE model "
                    f"{metrics['nrmse_free_running']:.3g}, ridge {metrics['ridge_nrmse_free_running']:.3g})",
                    ctx.out / "forecast_free_running.png")

    names = {"persistence": "persistence_", "ridge on lags": "ridge_"}
    return TaskResult(metrics, [drawn], Headline(
        "one-step NRMSE", metrics["nrmse_one_step"],
        {name: metrics[f"{prefix}nrmse_one_step"] for name, prefix in names.items()}, unit="NRMSE",
        validation=metrics.get("nrmse_one_step_val"),
        baselines_validation={name: metrics[f"{prefix}nrmse_one_step_val"] for name, prefix in names.items()}
        if ctx.has_validation else {}))
