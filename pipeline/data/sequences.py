"""Two generated sequence datasets: MNIST-1D irregularly sampled (labelled sequences) and the
Mackey-Glass series (windows to forecast). Both are made by code, seeded, so the fetch stage checks
what they write against the registry's sha256s like any downloaded file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.data.mnist1d import CLASSES
from pipeline.data.registry import Readout
from pipeline.errors import PipelineError
from pipeline.extras import require

FILES = ("x_train.npy", "y_train.npy", "x_test.npy", "y_test.npy")

KEPT = 20
"""Samples kept of each MNIST-1D signal's 40."""
IRREGULAR_SEEDS = {"train": 17, "test": 18}
"""One generator per split, so each split's kept positions depend only on its own seed."""

MG_SEED = 17
"""Seeds reservoirpy's random history before t = 0 (the only randomness of the series)."""
MG_TRANSIENT = 1000
"""Steps discarded first, while the series leaves its random history for the attractor."""
MG_TRAIN, MG_TEST, MG_WINDOW = 10_000, 2_000, 100


def _save(folder: Path, arrays: dict[str, np.ndarray]) -> None:
    for name, array in arrays.items():
        np.save(folder / f"{name}.npy", array, allow_pickle=False)


def _load(folder: Path, what: str, dataset: str) -> tuple[np.ndarray, ...]:
    try:
        return tuple(np.load(folder / name, allow_pickle=False) for name in FILES)
    except (OSError, ValueError) as err:
        raise PipelineError(f"{folder}: cannot read {what} ({err}); run `pipeline fetch {dataset} --force`") from None


def subsample(signals: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """float32 [N, 2, KEPT] from signals [N, L]: for each signal its own random KEPT of the L
    positions, in time order; row 0 the values there, row 1 the time since the previous kept sample
    (for the first one since t = -1, so every elapsed time is >= 1 and their cumulative sum - 1 is
    the position)."""
    n, length = signals.shape
    positions = np.sort(rng.permuted(np.tile(np.arange(length), (n, 1)), axis=1)[:, :KEPT], axis=1)
    values = np.take_along_axis(signals, positions, axis=1)
    elapsed = np.diff(positions, axis=1, prepend=-1)
    return np.stack([values, elapsed], axis=1).astype(np.float32)


def generate_irregular(folder: Path, parents: dict[str, Path]) -> None:
    """MNIST-1D with half of each signal's samples dropped at random: a model must use the elapsed
    times (as a continuous-time model does) or lose the timing. The labels are MNIST-1D's."""
    x_train, y_train, x_test, y_test = _load(parents["mnist1d"], "MNIST-1D", "mnist1d")
    _save(folder, {
        "x_train": subsample(x_train, np.random.default_rng(IRREGULAR_SEEDS["train"])), "y_train": y_train,
        "x_test": subsample(x_test, np.random.default_rng(IRREGULAR_SEEDS["test"])), "y_test": y_test,
    })


def read_irregular(folder: Path) -> Readout:
    """Kept values and elapsed times float32 [N, 2, 20] (`input`) and their classes (`label`)."""
    x_train, y_train, x_test, y_test = _load(folder, "irregular MNIST-1D", "mnist1d_irregular")
    return Readout({"input": x_train, "label": y_train}, {"input": x_test, "label": y_test}, CLASSES)


def windows(series: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """`count` contiguous, non-overlapping windows float32 [count, 1, MG_WINDOW] from the start of
    `series` (which must hold count * MG_WINDOW + 1 values), and their targets: the next value at
    each step, i.e. the same windows shifted by one."""
    span = count * MG_WINDOW
    inputs, targets = series[:span], series[1:span + 1]
    return (inputs.reshape(count, 1, MG_WINDOW).astype(np.float32),
            targets.reshape(count, 1, MG_WINDOW).astype(np.float32))


def generate_mackey_glass(folder: Path, parents: dict[str, Path] | None = None) -> None:
    """The Mackey-Glass series (tau 17, reservoirpy's defaults otherwise, a fixed seed), past its
    transient: steps [0, 10000) for training, [10000, 12000) for testing, cut into windows of 100
    steps whose targets are the next value at each step.

    Training has 99 windows, not 100: the targets of a 100th would end on step 10000, the first
    test step, so the test series would leak into training. The 20 test windows cover
    [10000, 12000) in order, each starting where the previous one ends, because the forecast
    evaluator rebuilds the test series by concatenating them; the last one's target needs step
    12000, so one step past the test series is generated."""
    datasets = require("reservoirpy.datasets", "continuous", "generating Mackey-Glass")
    series = datasets.mackey_glass(MG_TRANSIENT + MG_TRAIN + MG_TEST + 1, tau=17, seed=MG_SEED)[MG_TRANSIENT:, 0]
    x_train, y_train = windows(series[:MG_TRAIN], MG_TRAIN // MG_WINDOW - 1)
    x_test, y_test = windows(series[MG_TRAIN:], MG_TEST // MG_WINDOW)
    _save(folder, {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test})


def read_mackey_glass(folder: Path) -> Readout:
    """Windows float32 [N, 1, 100] (`input`) and the next value at each step (`target`); unlabelled."""
    x_train, y_train, x_test, y_test = _load(folder, "Mackey-Glass", "mackey_glass")
    return Readout({"input": x_train, "target": y_train}, {"input": x_test, "target": y_test}, None)
