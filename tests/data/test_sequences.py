"""The generated sequence datasets: irregularly sampled MNIST-1D and the Mackey-Glass windows."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from pipeline.data.fetch import fetch_dataset
from pipeline.data.registry import MACKEY_GLASS, MNIST1D, MNIST1D_IRREGULAR, DatasetSource
from pipeline.data.sequences import (
    FILES,
    KEPT,
    MG_SEED,
    MG_TRANSIENT,
    generate_irregular,
    generate_mackey_glass,
    read_irregular,
    read_mackey_glass,
)
from pipeline.errors import PipelineError


def fake_mnist1d(folder: Path, train: int = 30, test: int = 10) -> dict[str, np.ndarray]:
    """MNIST-1D's files with known values: signal i is 100 i + t at sample t."""
    def signals(n: int) -> np.ndarray:
        return (100 * np.arange(n)[:, None] + np.arange(40)[None]).astype(np.float32)

    arrays = {"x_train": signals(train), "y_train": np.arange(train, dtype=np.int64) % 10,
              "x_test": signals(test) + 10_000, "y_test": np.arange(test, dtype=np.int64)[::-1] % 10}
    folder.mkdir(parents=True)
    for name, array in arrays.items():
        np.save(folder / f"{name}.npy", array)
    return arrays


def file_bytes(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in FILES}


def test_irregular_keeps_20_samples_of_each_signal_with_their_elapsed_times(tmp_path: Path):
    original = fake_mnist1d(tmp_path / "mnist1d")
    out = tmp_path / "out"
    out.mkdir()
    generate_irregular(out, {"mnist1d": tmp_path / "mnist1d"})
    readout = read_irregular(out)
    assert readout.classes == tuple("0123456789")
    kept_positions = {}
    for split, signals in (("train", original["x_train"]), ("test", original["x_test"])):
        x, y = readout.train if split == "train" else readout.test, original[f"y_{split}"]
        assert x["input"].shape == (len(signals), 2, KEPT)
        assert x["input"].dtype == np.float32
        np.testing.assert_array_equal(x["label"], y)
        values, elapsed = x["input"][:, 0], x["input"][:, 1]
        assert (elapsed >= 1).all()
        positions = np.cumsum(elapsed, axis=1).astype(np.int64) - 1  # elapsed times count from t = -1
        assert (np.diff(positions, axis=1) > 0).all()
        assert positions.min() >= 0
        assert positions.max() < 40
        np.testing.assert_array_equal(values, np.take_along_axis(signals, positions, axis=1))
        assert len({tuple(p) for p in positions}) == len(signals)  # each signal its own subset
        kept_positions[split] = positions
    assert (kept_positions["train"][0] != kept_positions["test"][0]).any()  # each split its own generator
    again = tmp_path / "again"
    again.mkdir()
    generate_irregular(again, {"mnist1d": tmp_path / "mnist1d"})
    assert file_bytes(again) == file_bytes(out)


def test_an_unreadable_irregular_folder_says_how_to_fetch_it_again(tmp_path: Path):
    (tmp_path / "x_train.npy").write_bytes(b"not npy")
    with pytest.raises(PipelineError, match="pipeline fetch mnist1d_irregular --force"):
        read_irregular(tmp_path)


def test_mackey_glass_windows_are_contiguous_shifted_by_one_and_test_follows_training(tmp_path: Path):
    from reservoirpy.datasets import mackey_glass

    generate_mackey_glass(tmp_path)
    readout = read_mackey_glass(tmp_path)
    assert readout.classes is None
    (x_train, y_train), (x_test, y_test) = ((s["input"], s["target"]) for s in (readout.train, readout.test))
    assert x_train.shape == y_train.shape == (99, 1, 100)
    assert x_test.shape == y_test.shape == (20, 1, 100)
    for x, y in ((x_train, y_train), (x_test, y_test)):
        assert x.dtype == y.dtype == np.float32
        np.testing.assert_array_equal(x[:, 0, 1:], y[:, 0, :-1])  # the target: the next value at each step
        np.testing.assert_array_equal(x[1:, 0, 0], y[:-1, 0, -1])  # window i + 1 starts where window i ends
        assert 0.2 < x.min()
        assert x.max() < 1.5
    # Where they lie in the series: training targets end at step 9900, the test inputs are [10000, 12000).
    series = mackey_glass(MG_TRANSIENT + 12_001, tau=17, seed=MG_SEED)[MG_TRANSIENT:, 0].astype(np.float32)
    np.testing.assert_array_equal(np.concatenate([x_train.ravel(), y_train[-1, 0, -1:]]), series[:9901])
    np.testing.assert_array_equal(x_test.ravel(), series[10_000:12_000])
    again = tmp_path / "again"
    again.mkdir()
    generate_mackey_glass(again)
    assert file_bytes(again) == file_bytes(tmp_path)


@pytest.mark.parametrize("source", [MNIST1D_IRREGULAR, MACKEY_GLASS], ids=lambda s: s.name)
def test_fetch_generates_exactly_the_registered_files(source: DatasetSource, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch):
    """The registry's sha256s are those of what the generator writes (a mirror could not stand in)."""
    for env in (source.mirror_env, MNIST1D.mirror_env):
        monkeypatch.delenv(env, raising=False)
    folder = fetch_dataset(source, root=tmp_path / "data")
    for file in source.files:
        assert hashlib.sha256((folder / file.name).read_bytes()).hexdigest() == file.sha256
    readout = source.load_reader()(folder)
    assert readout.train["input"].shape[1:] == source.input_shape
