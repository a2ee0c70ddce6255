"""Moving Fashion-MNIST: trajectories, compositing, split separation, determinism, content hash."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest

from pipeline.data import video
from pipeline.data.fetch import fetch_dataset
from pipeline.data.registry import FASHION_MNIST, MOVING_FMNIST_32
from pipeline.data.video import FILES, FRAMES, ITEMS, Canvas, compose, make_split, shrink, trajectories
from pipeline.errors import PipelineError
from tests.conftest import needs_fashion_mnist


def write_idx(path: Path, array: np.ndarray) -> None:
    """An IDX file (uint8 data) as Fashion-MNIST ships them, gzipped."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def fake_fashion_mnist(folder: Path) -> None:
    """Training items all of intensity 100 with classes 0-4, test items of intensity 200 with
    classes 5-9: where a sequence's pixels and classes come from shows which split it drew on."""
    folder.mkdir(parents=True)
    for split, value, classes in (("train", 100, range(5)), ("t10k", 200, range(5, 10))):
        count = 40
        write_idx(folder / f"{split}-images-idx3-ubyte.gz", np.full((count, 28, 28), value))
        write_idx(folder / f"{split}-labels-idx1-ubyte.gz", np.resize(np.array(list(classes)), count))


def test_items_move_in_straight_lines_and_bounce_inside_the_canvas():
    canvas = Canvas(size=32, item=14, speed=(3.0, 3.0), train=1, test=1)
    corners = trajectories(200, canvas, np.random.default_rng(0))
    span = canvas.size - canvas.item
    assert corners.shape == (200, ITEMS, FRAMES, 2)
    assert corners.min() >= 0
    assert corners.max() <= span
    steps = np.diff(corners, axis=2).astype(float)
    # Rounded positions move about `speed` a frame, less only where a bounce folds the step back.
    distances = np.linalg.norm(steps, axis=-1)
    assert distances.max() <= 3.0 + np.sqrt(2)
    assert np.median(distances) > 2.0
    # Over 20 frames at 3 px a frame on an 18 px span, every item bounces at least once.
    reversals = (np.sign(steps[:, :, 1:]) * np.sign(steps[:, :, :-1]) < 0).any(axis=(2, 3))
    assert reversals.mean() > 0.9


def test_a_bounce_reflects_the_position_and_the_velocity():
    canvas = Canvas(size=20, item=10, speed=(4.0, 4.0), train=1, test=1)

    class Fixed:
        """Both items start at row 9, column 5, moving down (angle pi/2) at 4 px a frame."""

        def uniform(self, low, high, size):
            if size == (1, ITEMS, 2):  # positions
                return np.array([[[9.0, 5.0]] * ITEMS])
            return np.full(size, np.pi / 2 if high > 2 * np.pi - 1e-9 else 4.0)  # angles, then speeds

    rows = trajectories(1, canvas, Fixed())[0, 0, :5, 0]
    np.testing.assert_array_equal(rows, [9, 7, 3, 1, 5])  # 9 -> 13 reflects to 7 (span 10), then on down to 3...


def test_items_are_composited_by_their_maximum():
    items = np.zeros((1, ITEMS, 4, 4), dtype=np.uint8)
    items[0, 0] = 50
    items[0, 1, :2] = 200
    corners = np.zeros((1, ITEMS, FRAMES, 2), dtype=np.int64)
    corners[0, 1, :, 1] = 2  # the second item two columns to the right, overlapping two columns
    frames = compose(items, corners, size=8)
    assert frames.shape == (1, FRAMES, 1, 8, 8)
    assert frames.dtype == np.uint8
    first = frames[0, 0, 0]
    np.testing.assert_array_equal(first[0, :6], [50, 50, 200, 200, 200, 200])
    np.testing.assert_array_equal(first[3, :6], [50, 50, 50, 50, 0, 0])
    assert first[4:].sum() == 0


def test_items_shrink_by_average_pooling():
    images = np.arange(28 * 28, dtype=np.uint8).reshape(1, 28, 28) % 4
    small = shrink(images, 14)
    assert small.shape == (1, 14, 14)
    assert small[0, 0, 0] == np.rint(images[0, :2, :2].mean())
    with pytest.raises(ValueError, match="must divide"):
        shrink(images, 10)


def test_each_sequence_keeps_its_items_classes():
    images = np.stack([np.full((28, 28), 10 * (c + 1), dtype=np.uint8) for c in range(10)])
    canvas = Canvas(size=64, item=28, speed=(2.0, 2.0), train=30, test=1)
    videos, classes = make_split(images, np.arange(10), 30, canvas, np.random.default_rng(1))
    assert videos.shape == (30, FRAMES, 1, 64, 64)
    assert classes.shape == (30, ITEMS)
    assert classes.dtype == np.int64
    for frames, pair in zip(videos, classes, strict=True):
        assert set(np.unique(frames[0])) - {0} <= {10 * (c + 1) for c in pair}
        assert frames[0].max() == 10 * (max(pair) + 1)


@pytest.fixture
def small_canvas(monkeypatch: pytest.MonkeyPatch) -> Canvas:
    canvas = Canvas(size=32, item=14, speed=(1.0, 2.0), train=12, test=6)
    monkeypatch.setitem(video.CANVASES, "moving_fmnist_32", canvas)
    return canvas


def test_training_sequences_draw_on_training_items_and_test_on_test_items(tmp_path: Path, small_canvas: Canvas):
    fake_fashion_mnist(tmp_path / "fmnist")
    out = tmp_path / "out"
    out.mkdir()
    video.generate_32(out, {"fashion_mnist": tmp_path / "fmnist"})
    readout = video.read(out)
    assert readout.classes == video.CLASSES
    for split, value, classes, count in ((readout.train, 100, range(5), 12), (readout.test, 200, range(5, 10), 6)):
        assert split["input"].shape == (count, FRAMES, 1, 32, 32)
        assert split["input"].dtype == np.uint8
        assert set(np.unique(split["input"])) == {0, value}
        assert set(np.unique(split["labels"])) <= set(classes)
    again = tmp_path / "again"
    again.mkdir()
    video.generate_32(again, {"fashion_mnist": tmp_path / "fmnist"})
    assert all((again / name).read_bytes() == (out / name).read_bytes() for name in FILES)


def test_an_unreadable_folder_says_how_to_fetch_it_again(tmp_path: Path):
    folder = tmp_path / "moving_fmnist_32"
    folder.mkdir()
    (folder / "x_train.npy").write_bytes(b"not npy")
    with pytest.raises(PipelineError, match="pipeline fetch moving_fmnist_32 --force"):
        video.read(folder)


@needs_fashion_mnist
def test_fetch_generates_exactly_the_registered_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The registry's sha256s are those the generator writes from the real Fashion-MNIST."""
    monkeypatch.delenv(MOVING_FMNIST_32.mirror_env, raising=False)
    fetch_dataset(FASHION_MNIST, root=tmp_path / "data")
    folder = fetch_dataset(MOVING_FMNIST_32, root=tmp_path / "data")
    for file in MOVING_FMNIST_32.files:
        assert hashlib.sha256((folder / file.name).read_bytes()).hexdigest() == file.sha256
    readout = video.read(folder)
    assert readout.train["input"].shape[1:] == MOVING_FMNIST_32.input_shape
    assert readout.train["labels"].shape == (3000, 2)
