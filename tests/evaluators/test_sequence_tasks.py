"""The sequence-model tasks (forecast, noise_robustness, network_stats) on stub models whose
answers are known, in a context built by hand: no training."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from pipeline.data.datamodule import Splits
from pipeline.errors import PipelineError
from pipeline.evaluators import forecast, network_stats, noise_robustness
from pipeline.evaluators.context import Context
from pipeline.evaluators.specs import ForecastSpec, NetworkStatsSpec, NoiseRobustnessSpec
from pipeline.formatting import spread
from pipeline.models.continuous import CTRNNSpec


def context(splits: Splits, model: nn.Module, out: Path, elapsed_time: str = "none") -> Context:
    spec = SimpleNamespace(name="toy", seed=0, model=CTRNNSpec(kind="ct_rnn", elapsed_time=elapsed_time))
    return Context(spec, splits, model, model, out, "cpu")


# ---------------------------------------------------------------- forecast


def windows(series: np.ndarray, length: int) -> dict[str, torch.Tensor]:
    """Contiguous windows [N, 1, length] of a series of N * length + 1 values, each with the next
    value at every step as its target (the layout of the Mackey-Glass data)."""
    values = torch.from_numpy(series.astype(np.float32))
    return {"input": values[:-1].reshape(-1, 1, length), "target": values[1:].reshape(-1, 1, length)}


def series_splits(train: np.ndarray, test: np.ndarray, length: int, seed: int = 0) -> Splits:
    """Training windows shuffled and a fifth carved out for validation, as load_splits does;
    test windows in order."""
    fields = windows(train, length)
    order = torch.randperm(len(fields["input"]), generator=torch.Generator().manual_seed(seed))
    cut = len(order) // 5
    return Splits(train={k: v[order[cut:]] for k, v in fields.items()},
                  val={k: v[order[:cut]] for k, v in fields.items()}, test=windows(test, length), classes=None)


class Oracle(nn.Module):
    """Knows the series: finds where it is by three consecutive values (which occur once), so it
    predicts every next value exactly, and stays on the series when it runs free."""

    def __init__(self, *series: np.ndarray):
        super().__init__()
        self.series = [s.astype(np.float32).tolist() for s in series]
        self.where = {tuple(values[i:i + 3]): (k, i) for k, values in enumerate(self.series)
                      for i in range(len(values) - 2)}
        assert len(self.where) == sum(len(values) - 2 for values in self.series)

    def ahead(self, three: list[float], offset: int, steps: int) -> list[float]:
        """The `steps` values of the series from `offset` past the start of `three`."""
        k, i = self.where[tuple(three)]
        return self.series[k][i + offset:i + offset + steps]

    def predict_next(self, inputs: torch.Tensor) -> torch.Tensor:
        length = inputs.shape[-1]
        return torch.tensor([[self.ahead(row[:3], 1, length)] for row in inputs[:, 0].tolist()])

    def generate(self, inputs: torch.Tensor, steps: int) -> torch.Tensor:
        return torch.tensor([[self.ahead(row[-3:], 3, steps)] for row in inputs[:, 0].tolist()])


class Zeros(nn.Module):
    """Predicts 0 throughout: a model whose figures are not under test."""

    def predict_next(self, inputs: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(inputs)

    def generate(self, inputs: torch.Tensor, steps: int) -> torch.Tensor:
        return torch.zeros(len(inputs), 1, steps)


def logistic_map(n: int, x0: float) -> np.ndarray:
    """A chaotic series, x <- 3.9 x (1 - x): deterministic, but nonlinear, so neither persistence
    nor a linear model on lags predicts it."""
    series = np.empty(n)
    series[0] = x0
    for t in range(1, n):
        series[t] = 3.9 * series[t - 1] * (1 - series[t - 1])
    return series


def test_an_exact_forecaster_scores_zero_and_beats_both_baselines(tmp_path):
    train, test = logistic_map(40 * 50 + 1, 0.3), logistic_map(20 * 50 + 1, 0.41)
    task = ForecastSpec(warmup=30, horizon=40, starts=5, lags=10)
    result = forecast.run(task, context(series_splits(train, test, 50), Oracle(train, test), tmp_path))
    m = result.metrics
    assert m["nrmse_one_step"] < 1e-6
    assert m["nrmse_free_running"] < 1e-6
    for method in ("persistence_", "ridge_"):
        assert m[f"{method}nrmse_one_step"] > 0.05
        assert m[f"{method}nrmse_free_running"] > 0.05
        assert f"{method}nrmse_one_step_val" in m
    assert m["ridge_nrmse_one_step"] < m["persistence_nrmse_one_step"]  # the map is not a random walk
    headline = result.headline
    assert headline.unit == "NRMSE"
    assert headline.value == m["nrmse_one_step"]
    assert headline.baselines == {"persistence": m["persistence_nrmse_one_step"],
                                  "ridge on lags": m["ridge_nrmse_one_step"]}
    assert headline.validation == m["nrmse_one_step_val"]
    assert set(headline.baselines_validation) == {"persistence", "ridge on lags"}
    assert [path.name for path in result.artifacts] == ["forecast_free_running.png"]
    assert result.artifacts[0].stat().st_size > 0


def test_persistence_on_an_alternating_series_scores_what_it_should(tmp_path):
    """+1, -1, +1, ...: persistence is off by 2 at every step (one-step NRMSE 2 / 1), and running
    free it repeats the value before t0, right every other step (sqrt(4 / 2) / 1)."""
    alternating = np.where(np.arange(10 * 10 + 1) % 2 == 0, 1.0, -1.0)
    task = ForecastSpec(warmup=4, horizon=10, starts=3, lags=2)
    m = forecast.run(task, context(series_splits(alternating, alternating, 10), Zeros(), tmp_path)).metrics
    assert m["persistence_nrmse_one_step"] == pytest.approx(2.0)
    assert m["persistence_nrmse_free_running"] == pytest.approx(math.sqrt(2))
    assert m["nrmse_one_step"] == pytest.approx(1.0)  # predicting the mean: the RMSE is the standard deviation


def test_the_ridge_baseline_recovers_a_linear_autoregressive_process(tmp_path):
    """x[t] = 0.6 x[t-1] - 0.3 x[t-2] + noise: fitted on the training windows, the ridge baseline's
    one-step error is the noise's (the true coefficients' error on the same positions), a few
    percent above at most."""
    rng = np.random.default_rng(0)
    n_train, n_test, length, lags = 60 * 100 + 1, 20 * 100 + 1, 100, 5
    noise = 0.1 * rng.standard_normal(n_train + n_test)
    series = np.zeros(n_train + n_test)
    for t in range(2, len(series)):
        series[t] = 0.6 * series[t - 1] - 0.3 * series[t - 2] + noise[t]
    train, test = series[:n_train], series[n_train:]
    m = forecast.run(ForecastSpec(warmup=20, horizon=20, starts=4, lags=lags),
                     context(series_splits(train, test, length), Zeros(), tmp_path)).metrics
    inputs, targets = (test.astype(np.float32).astype(np.float64)[s].reshape(-1, length)
                       for s in (slice(None, -1), slice(1, None)))
    best = 0.6 * inputs[:, lags:] - 0.3 * inputs[:, lags - 1:-1]  # x[t+1] from x[t], x[t-1], t from lags on
    floor = forecast.nrmse(best, targets[:, lags:])
    assert m["ridge_nrmse_one_step"] == pytest.approx(floor, rel=0.03)
    assert m["ridge_nrmse_one_step"] < m["persistence_nrmse_one_step"]


def test_settings_the_data_cannot_serve_are_refused_with_what_to_change(tmp_path):
    ctx = context(series_splits(logistic_map(201, 0.3), logistic_map(201, 0.6), 20), Zeros(), tmp_path)
    with pytest.raises(PipelineError, match="lags .20. must be below the window length .20."):
        forecast.run(ForecastSpec(warmup=30, horizon=10, lags=20), ctx)
    with pytest.raises(PipelineError, match="warmup .5. must be at least forecast.lags .10."):
        forecast.run(ForecastSpec(warmup=5, horizon=10, lags=10), ctx)
    with pytest.raises(PipelineError, match="test series .201 values. is shorter"):
        forecast.run(ForecastSpec(warmup=150, horizon=100, lags=10), ctx)


# ---------------------------------------------------------------- noise_robustness


def offsets(n: int, length: int, seed: int, time_channel: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Signals +-1 alternating around an offset of +-0.2 (the class): the mean tells the class
    exactly, until noise blurs it. With a time channel, all 0.5 (evenly spaced samples)."""
    labels = torch.randint(0, 2, (n,), generator=torch.Generator().manual_seed(seed))
    pattern = torch.where(torch.arange(length) % 2 == 0, 1.0, -1.0)
    signals = (0.4 * labels - 0.2)[:, None] + pattern
    inputs = signals[:, None]
    if time_channel:
        inputs = torch.cat([inputs, torch.full_like(inputs, 0.5)], dim=1)
    return inputs, labels


class ThresholdMean(nn.Module):
    """Class 1 where the mean of the first channel is positive. Records whether the last channel
    (the elapsed time, where there is one) came through untouched."""

    def __init__(self):
        super().__init__()
        self.time_untouched: list[bool] = []

    def predict(self, inputs: torch.Tensor) -> torch.Tensor:
        self.time_untouched.append(bool((inputs[:, -1] == 0.5).all()))
        return (inputs[:, 0].mean(dim=1) > 0).long()


def labelled(time_channel: bool) -> Splits:
    return Splits.of_pairs(*(offsets(n, 8, seed, time_channel) for n, seed in ((400, 0), (200, 1), (400, 2))),
                           classes=("low", "high"))


def test_accuracy_falls_as_noise_grows_and_the_draws_are_seeded(tmp_path):
    task = NoiseRobustnessSpec(levels=[1.0, 0.0, 0.1], repeats=2)
    result = noise_robustness.run(task, context(labelled(False), ThresholdMean(), tmp_path))
    m = result.metrics
    assert m["accuracy_noise_0"] == 1.0
    assert m["accuracy_noise_0.1"] == 1.0
    assert 0.55 < m["accuracy_noise_1"] < 0.9  # the noise on the mean: 1 / sqrt(8), against a margin of 0.2
    assert m["area"] == pytest.approx((0.1 * 1.0 + 0.9 * (1.0 + m["accuracy_noise_1"]) / 2) / 1.0)
    headline = result.headline
    assert headline.label == "accuracy at noise 1x"
    assert headline.value == m["accuracy_noise_1"]
    assert headline.baselines == {"no noise": 1.0}
    assert headline.baselines_validation == {"no noise": 1.0}
    assert headline.validation == m["accuracy_val_noise_1"] < 1.0
    assert [path.name for path in result.artifacts] == ["noise_robustness.png"]
    again = noise_robustness.run(task, context(labelled(False), ThresholdMean(), tmp_path)).metrics
    assert again == m


def test_a_time_channel_is_left_untouched(tmp_path):
    task = NoiseRobustnessSpec(levels=[0.0, 1.0], repeats=1)
    model = ThresholdMean()
    m = noise_robustness.run(task, context(labelled(True), model, tmp_path, elapsed_time="last_channel")).metrics
    assert all(model.time_untouched)
    assert m["accuracy_noise_1"] < 0.9
    model = ThresholdMean()  # read as one more value channel, the same channel gets noise
    noise_robustness.run(task, context(labelled(True), model, tmp_path, elapsed_time="none"))
    assert not all(model.time_untouched)


# ---------------------------------------------------------------- network_stats


class Counted(nn.Module):
    """A network that reports its own statistics and counts solver steps from its last reset on,
    six per pass: over the pass `probe` runs, as an ODE network does."""

    def __init__(self):
        super().__init__()
        self.readout = nn.Linear(8, 2)
        self.nfe = 0
        self.passes: list[str] = []

    def classify(self, inputs: torch.Tensor) -> torch.Tensor:
        self.nfe += 6
        self.passes.append("classify")
        return self.readout(inputs[:, 0])

    def predict_next(self, inputs: torch.Tensor) -> torch.Tensor:
        self.nfe += 6
        self.passes.append("predict_next")
        return inputs

    def network_stats(self, probe=None) -> dict[str, float]:
        if probe is not None:
            self.nfe = 0
            probe()
        return {"parameters": 18, "synapses_used": 12, "synapses_dense": 16, "tau_mean": 1.5, "nfe": self.nfe}


@pytest.mark.parametrize("data", ["labelled", "series"])
def test_network_stats_reports_the_model_and_times_its_pass(tmp_path, data):
    splits = labelled(False) if data == "labelled" else series_splits(np.arange(161.0), np.arange(81.0), 8)
    model = Counted()
    result = network_stats.run(NetworkStatsSpec(timing_repeats=3), context(splits, model, tmp_path))
    m = result.metrics
    assert {k: m[k] for k in ("parameters", "synapses_used", "synapses_dense", "tau_mean")} == {
        "parameters": 18.0, "synapses_used": 12.0, "synapses_dense": 16.0, "tau_mean": 1.5}
    assert m["nfe"] == 6  # one pass, not the count over the timed passes
    assert m["inference_ms_per_sequence"] > 0
    assert set(model.passes) == {"classify" if data == "labelled" else "predict_next"}
    headline = result.headline
    assert (headline.label, headline.value, headline.baselines, headline.unit) == (
        "synapses used", 12.0, {"dense": 16.0}, "synapses")


def test_a_model_without_the_required_statistics_is_refused(tmp_path):
    model = Counted()
    model.network_stats = lambda probe=None: {"parameters": 18}
    with pytest.raises(ValueError, match="lacks synapses_used, synapses_dense"):
        network_stats.run(NetworkStatsSpec(timing_repeats=1), context(labelled(False), model, tmp_path))


def test_the_report_writes_counts_as_integers_and_errors_to_three_digits():
    assert spread({"mean": 12288.0, "std": None}, "synapses") == "12,288 synapses"
    assert spread({"mean": 12288.0, "std": 3.4}, "synapses") == "12,288 synapses ± 3"
    assert spread({"mean": 0.012345, "std": None}, "NRMSE") == "0.0123 NRMSE"
    assert spread({"mean": 0.012345, "std": 0.00213}, "NRMSE") == "0.0123 NRMSE ± 0.0021"
    assert spread({"mean": 4.2, "std": 0.3}, "x") == "4.2x ± 0.30"  # other units as before
