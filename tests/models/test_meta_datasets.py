"""The meta-learning datasets: generated, bit for bit what their pinned sha256s say, and split so
that no meta-test class (or group of classes) is seen in training."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from pipeline.data.fetch import fetch_dataset, require_dataset, sha256_of
from pipeline.data.source import DatasetSource
from pipeline.errors import PipelineError
from pipeline.models.meta import data as datasets
from pipeline.models.meta.datasets import DATASETS, FMNIST_FEWSHOT, MNIST1D_FEWSHOT, SINUSOID
from tests.conftest import fashion_mnist_available, needs_fashion_mnist

BY_NAME = {source.name: source for source in DATASETS}
CLASSIFICATION = [MNIST1D_FEWSHOT.name, pytest.param(FMNIST_FEWSHOT.name, marks=needs_fashion_mnist)]
ALL = [MNIST1D_FEWSHOT.name, pytest.param(FMNIST_FEWSHOT.name, marks=needs_fashion_mnist), SINUSOID.name]


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each dataset made by the fetch stage (generated, then checked against its sha256s) once for
    the module; fmnist_fewshot only where Fashion-MNIST is installed (its parent is fetched from there)."""
    root = tmp_path_factory.mktemp("data")
    return {source.name: fetch_dataset(source, root=root) for source in DATASETS
            if source is not FMNIST_FEWSHOT or fashion_mnist_available()}


def test_the_sources_declare_what_their_readers_return():
    assert [source.name for source in DATASETS] == ["mnist1d_fewshot", "fmnist_fewshot", "sinusoid"]
    assert (MNIST1D_FEWSHOT.modality, FMNIST_FEWSHOT.modality, SINUSOID.modality) == ("sequence", "image", "function")
    assert FMNIST_FEWSHOT.derived_from == ("fashion_mnist",)
    assert SINUSOID.input_shape == (1, 50) and not SINUSOID.labelled
    for source in DATASETS:
        assert all(len(file.sha256) == 64 for file in source.files)
        assert source.mirror_env.endswith("_DIR") and source.fix_hint and "\n" not in source.description
        source.load_reader(), source.load_generator()  # the module:function paths resolve


@pytest.mark.parametrize("name", ALL)
def test_generation_reproduces_the_pinned_sha256s(generated: dict[str, Path], name: str):
    source, folder = BY_NAME[name], generated[name]
    assert sorted(p.name for p in folder.iterdir()) == sorted(f.name for f in source.files)
    assert {f.name: sha256_of(folder / f.name) for f in source.files} == {f.name: f.sha256 for f in source.files}
    assert require_dataset(source, folder=folder) == folder
    assert sum((folder / f.name).stat().st_size for f in source.files) < 16 << 20


def check_fields(source: DatasetSource, split: dict[str, np.ndarray], examples: int) -> None:
    assert sorted(split) == sorted(field.name for field in source.fields)
    for field in source.fields:
        assert split[field.name].dtype == np.dtype(field.dtype), field.name
        assert split[field.name].shape == (examples, *field.shape), field.name


@pytest.mark.parametrize("name", CLASSIFICATION)
def test_meta_test_classes_and_their_groups_never_occur_in_training(generated: dict[str, Path], name: str):
    source = BY_NAME[name]
    readout = source.load_reader()(generated[name])
    classes = readout.classes
    train_labels, test_labels = np.unique(readout.train["label"]), np.unique(readout.test["label"])
    train_side = len(train_labels)
    # Every class has examples; the training side's come first in `classes`, the test side's after.
    assert train_labels.tolist() == list(range(train_side))
    assert test_labels.tolist() == list(range(train_side, len(classes)))
    groups = [{name.split("@")[0] for name in side} for side in (classes[:train_side], classes[train_side:])]
    assert groups[0].isdisjoint(groups[1])
    assert len(set(classes)) == len(classes)


def test_mnist1d_fewshot(generated: dict[str, Path]):
    readout = MNIST1D_FEWSHOT.load_reader()(generated["mnist1d_fewshot"])
    check_fields(MNIST1D_FEWSHOT, readout.train, 100 * 100)
    check_fields(MNIST1D_FEWSHOT, readout.test, 10 * 200)
    assert readout.classes == (*(f"template_{i:03d}" for i in range(100)), *(f"digit_{d}" for d in range(10)))
    assert np.bincount(readout.train["label"]).tolist() == [100] * 100
    assert np.bincount(readout.test["label"], minlength=110)[100:].tolist() == [200] * 10
    train = readout.train["input"].astype(np.float64)
    assert abs(train.mean()) < 1e-5 and abs(train.std() - 1) < 1e-5  # scaled by the training side's statistics
    assert np.isfinite(readout.test["input"]).all()


def test_mnist1d_fewshot_templates_look_like_digits_but_are_none_of_them():
    digits = datasets.digit_templates()
    templates = datasets.random_templates(digits)
    assert templates.shape == (100, 12)
    # Normalised like MNIST-1D's digits: start (and end) at 0, std 1/6.
    assert np.allclose(templates[:, 0], 0) and np.allclose(templates[:, -1], 0)
    assert np.allclose(templates.std(1), digits.std(1)[0]) and np.allclose(digits.std(1), 1 / 6)
    assert datasets.correlations(templates, digits).max() <= datasets.TEMPLATE_MAX_CORRELATION
    among = datasets.correlations(templates, templates)[~np.eye(100, dtype=bool)]
    assert among.max() <= datasets.TEMPLATE_MAX_CORRELATION
    assert np.array_equal(datasets.random_templates(digits), templates)


def test_mnist1d_fewshot_leaves_numpys_global_generator_alone():
    np.random.seed(3)
    before = np.random.get_state()[1].copy()
    datasets._transformed(datasets.digit_templates()[:2], 2, seed=5)
    assert np.array_equal(np.random.get_state()[1], before)


def unrotated(readout_split: dict[str, np.ndarray], classes: tuple[str, ...]) -> np.ndarray:
    """Each image [N, 28, 28] turned back by its class's angle."""
    angles = np.array([int(name.split("@")[1]) for name in classes])[readout_split["label"]]
    images = readout_split["input"][:, 0]
    back = np.empty_like(images)
    for angle in datasets.FMNIST_ANGLES:
        back[angles == angle] = np.rot90(images[angles == angle], k=-(angle // 90), axes=(-2, -1))
    return back


@needs_fashion_mnist
def test_fmnist_fewshot(generated: dict[str, Path]):
    from pipeline.data.fashion_mnist import CLASSES, read

    readout = FMNIST_FEWSHOT.load_reader()(generated["fmnist_fewshot"])
    check_fields(FMNIST_FEWSHOT, readout.train, 28 * 500)
    check_fields(FMNIST_FEWSHOT, readout.test, 12 * 250)
    classes = readout.classes
    assert len(classes) == 40 and all(name.split("@")[0] in CLASSES for name in classes)
    assert np.bincount(readout.train["label"]).tolist() == [500] * 28
    assert np.bincount(readout.test["label"], minlength=40)[28:].tolist() == [250] * 12
    # The documented meta-test side, all four rotations of each of its bases, and only them.
    assert [CLASSES[base] for base in datasets.fmnist_test_bases()] == ["T-shirt/top", "Trouser", "Coat"]
    assert classes[28:] == tuple(f"{base}@{angle}" for base in ("T-shirt/top", "Trouser", "Coat")
                                 for angle in (0, 90, 180, 270))
    assert {name.split("@")[0] for name in classes[:28]} == set(CLASSES) - {"T-shirt/top", "Trouser", "Coat"}

    parent = read(generated["fmnist_fewshot"].parent / "fashion_mnist")
    seen: set[bytes] = set()
    for split in ("train", "test"):
        images = unrotated(getattr(readout, split), classes)
        # Turned back, each image is a Fashion-MNIST image of the same split and of its base class ...
        source = getattr(parent, split)
        base_of = {image.tobytes(): int(label) for image, label in zip(source["input"][:, 0], source["label"],
                                                                        strict=True)}
        bases = [base_of.get(image.tobytes()) for image in images]
        assert bases == [CLASSES.index(classes[label].split("@")[0]) for label in getattr(readout, split)["label"]]
        # ... and no image occurs twice, under one class or two (nor in both splits).
        keys = {image.tobytes() for image in images}
        assert len(keys) == len(images) and seen.isdisjoint(keys)
        seen |= keys


def test_sinusoid(generated: dict[str, Path]):
    readout = SINUSOID.load_reader()(generated["sinusoid"])
    assert readout.classes is None
    for split, tasks in ((readout.train, 20_000), (readout.test, 2_000)):
        check_fields(SINUSOID, split, tasks)
        x, amplitude, phase = split["input"], split["amplitude"], split["phase"]
        assert 0.1 <= amplitude.min() and amplitude.max() <= 5.0
        assert 0.0 <= phase.min() and phase.max() <= np.float32(np.pi)
        assert -5.0 <= x.min() and x.max() <= 5.0
        expected = amplitude[:, None, None].astype(np.float64) * np.sin(
            x.astype(np.float64) - phase[:, None, None].astype(np.float64))
        assert np.abs(split["target"] - expected).max() <= 1e-5
        # The ranges are covered, not a corner of them.
        assert amplitude.max() - amplitude.min() > 4.5 and phase.max() - phase.min() > 3.0
    assert not np.isin(readout.test["amplitude"], readout.train["amplitude"]).all()


@pytest.mark.parametrize("name", ALL)
def test_a_missing_or_corrupt_file_is_a_clear_error(generated: dict[str, Path], name: str, tmp_path: Path):
    source = BY_NAME[name]
    read = source.load_reader()
    folder = shutil.copytree(generated[name], tmp_path / name)
    first, second = (folder / f.name for f in source.files[:2])
    fix = f"pipeline fetch {name} --force"

    first.write_bytes(first.read_bytes()[:200])  # truncated
    with pytest.raises(PipelineError, match=fix):
        read(folder)
    with pytest.raises(PipelineError, match="corrupt"):
        require_dataset(source, folder=folder)

    shutil.copyfile(generated[name] / first.name, first)
    np.save(second, np.zeros((3, 7), dtype=np.float64))  # a readable file of the wrong kind
    with pytest.raises(PipelineError, match=fix):
        read(folder)

    second.unlink()
    with pytest.raises(PipelineError, match=fix):
        read(folder)
    with pytest.raises(PipelineError, match="missing"):
        require_dataset(source, folder=folder)


def test_fmnist_fewshot_without_its_parent_is_a_clear_error(tmp_path: Path):
    with pytest.raises(PipelineError, match="pipeline fetch fashion_mnist"):
        datasets.generate_fmnist_fewshot(tmp_path, {"fashion_mnist": tmp_path / "nowhere"})
