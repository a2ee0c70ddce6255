"""The `white_signal` dataset: band-limited white noise, the signal a communication channel is
tested on (Nengo's WhiteSignal, written here in numpy so that fetching it needs no extra). One
continuous signal, sampled every millisecond, is cut into windows: the first SIGNAL_TRAIN seconds
for training, the next SIGNAL_TEST for testing, in order."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.data.source import Readout
from pipeline.errors import PipelineError

SIGNAL_SEED = 20190
SIGNAL_HIGH_HZ = 5.0
"""The cutoff: the signal holds every frequency from 1 / duration up to this, none above."""
SIGNAL_RMS = 0.5
SIGNAL_STEP_S = 0.001
SIGNAL_WINDOW = 1000
"""Steps per window (one second)."""
SIGNAL_TRAIN, SIGNAL_TEST = 60, 10
"""Windows (seconds) of training and of test signal."""
FILES = ("x_train.npy", "y_train.npy", "x_test.npy", "y_test.npy")


def white_signal(steps: int, step_s: float, high_hz: float, rms: float, rng: np.random.Generator) -> np.ndarray:
    """[steps] float64: Gaussian white noise with every frequency above `high_hz` removed (and the
    mean), scaled to root mean square `rms`."""
    frequencies = np.fft.rfftfreq(steps, d=step_s)
    kept = (frequencies > 0) & (frequencies <= high_hz)
    if not kept.any():
        raise ValueError(f"no frequency in (0, {high_hz}] Hz over {steps * step_s} s: lengthen the signal")
    coefficients = np.zeros(len(frequencies), dtype=complex)
    coefficients[kept] = rng.standard_normal(kept.sum()) + 1j * rng.standard_normal(kept.sum())
    signal = np.fft.irfft(coefficients, n=steps)
    return signal * (rms / np.sqrt(np.mean(signal ** 2)))


def generate(folder: Path, parents: dict[str, Path] | None = None) -> None:
    """Windows float32 [N, 1, SIGNAL_WINDOW] of one signal, and the next value at each step (the
    series contract; the channel's own target is the input itself). One step past the test signal
    is generated for the last target, and the test signal starts one step after the training
    signal's last target, so that no training target is a test input."""
    total = (SIGNAL_TRAIN + SIGNAL_TEST) * SIGNAL_WINDOW
    signal = white_signal(total + 2, SIGNAL_STEP_S, SIGNAL_HIGH_HZ, SIGNAL_RMS, np.random.default_rng(SIGNAL_SEED))
    split = SIGNAL_TRAIN * SIGNAL_WINDOW

    def windows(start: int, count: int) -> tuple[np.ndarray, np.ndarray]:
        span = slice(start, start + count * SIGNAL_WINDOW)
        shifted = slice(start + 1, start + 1 + count * SIGNAL_WINDOW)
        return (signal[span].reshape(count, 1, SIGNAL_WINDOW).astype(np.float32),
                signal[shifted].reshape(count, 1, SIGNAL_WINDOW).astype(np.float32))

    (x_train, y_train), (x_test, y_test) = windows(0, SIGNAL_TRAIN), windows(split + 1, SIGNAL_TEST)
    for name, array in zip(FILES, (x_train, y_train, x_test, y_test), strict=True):
        np.save(folder / name, array, allow_pickle=False)


def read(folder: Path) -> Readout:
    try:
        x_train, y_train, x_test, y_test = (np.load(folder / name, allow_pickle=False) for name in FILES)
    except (OSError, ValueError) as err:
        raise PipelineError(f"{folder}: cannot read the white signal ({err}); run "
                            "`pipeline fetch white_signal --force`") from None
    return Readout({"input": x_train, "target": y_train}, {"input": x_test, "target": y_test}, None)
