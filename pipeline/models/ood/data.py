"""The out-of-distribution datasets, generated at fetch time by seeded numpy code (no threads, uint8
files) and checked against the sha256s in `datasets.py` like a download.

Two disjoint groups (the split that keeps outlier exposure honest):
- test families, read only by the `ood_detection` task, never by training or any choice of setting:
  scikit-learn's handwritten digits upscaled to 28x28, Fashion-MNIST test images inverted or with
  their pixels permuted, Gaussian and uniform noise, and the four Fashion-MNIST classes a
  `fmnist_six` model never sees;
- outlier-exposure families, read only by training (their train split) and by the choice of the
  energy margins (their test split): Fashion-MNIST training images with their 7x7 patches shuffled,
  and smooth noise (uniform noise at 7x7, upsampled).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.data.arrays import load_arrays, save_arrays
from pipeline.data.source import Readout
from pipeline.errors import PipelineError

IMAGE = (1, 28, 28)
SIX = (0, 1, 2, 3, 4, 5)
"""The Fashion-MNIST classes `fmnist_six` keeps: T-shirt/top, Trouser, Pullover, Dress, Coat, Sandal.
The other four (Shirt, Sneaker, Bag, Ankle boot) are `ood_fmnist_four`: near OOD, since a shirt
resembles a T-shirt, pullover or coat and a sneaker a sandal."""
NOISE_IMAGES = 10_000
OUTLIERS = {"train": 20_000, "test": 2_000}
"""Outlier-exposure images per split: train for training, test for choosing the margins."""
PATCH = 7
SEEDS = {"permutation": 3101, "gaussian": 3102, "uniform": 3103, "patches": 3104, "smooth": 3105}
GAUSSIAN = (0.5, 0.25)
"""Mean and standard deviation of the Gaussian noise images' pixels (intensities in [0, 1], clipped)."""


def _fashion(parents: dict[str, Path]) -> Readout:
    from pipeline.data.fashion_mnist import read

    parent = read(parents["fashion_mnist"])
    if parent.classes is None or len(parent.classes) != 10:
        raise PipelineError(f"{parents['fashion_mnist']}: Fashion-MNIST without its 10 class names; run "
                            "`pipeline fetch fashion_mnist --force`")
    return parent


def _uint8(values: np.ndarray) -> np.ndarray:
    """Intensities in [0, 1] (float64) as uint8 pixels, rounded half to even, the same on any machine."""
    return np.rint(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8)


def resize_bilinear(images: np.ndarray, size: int) -> np.ndarray:
    """Images float64 [N, h, w] resized to [N, size, size] by bilinear interpolation with pixel
    centres aligned (as torch's `interpolate(..., align_corners=False)`), in numpy alone."""

    def axis(n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        centre = (np.arange(size) + 0.5) * n_in / size - 0.5
        centre = np.clip(centre, 0, n_in - 1)
        low = np.floor(centre).astype(int)
        high = np.minimum(low + 1, n_in - 1)
        return low, high, centre - low

    r0, r1, rw = axis(images.shape[1])
    c0, c1, cw = axis(images.shape[2])
    rows = images[:, r0] * (1 - rw)[None, :, None] + images[:, r1] * rw[None, :, None]
    return rows[:, :, c0] * (1 - cw)[None, None, :] + rows[:, :, c1] * cw[None, None, :]


def digits_28() -> np.ndarray:
    """scikit-learn's 1797 handwritten digits (8x8, values 0-16) as MNIST lays digits out: resized
    to 20x20 and centred in 28x28, bright strokes on black, uint8 [1797, 1, 28, 28]."""
    from sklearn.datasets import load_digits

    small = load_digits().images.astype(np.float64) / 16.0
    images = np.zeros((len(small), 28, 28))
    images[:, 4:24, 4:24] = resize_bilinear(small, 20)
    return _uint8(images)[:, None]


def shuffle_patches(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each image [N, 1, 28, 28] with its 4x4 grid of 7x7 patches in a random order of its own."""
    n, side = len(images), IMAGE[1] // PATCH
    patches = images.reshape(n, side, PATCH, side, PATCH).transpose(0, 1, 3, 2, 4).reshape(n, side * side,
                                                                                          PATCH, PATCH)
    order = np.argsort(rng.random((n, side * side)), axis=1)
    shuffled = np.take_along_axis(patches, order[:, :, None, None], axis=1)
    return shuffled.reshape(n, side, side, PATCH, PATCH).transpose(0, 1, 3, 2, 4).reshape(n, *IMAGE)


def smooth_noise(count: int, rng: np.random.Generator) -> np.ndarray:
    """Uniform noise drawn at 7x7 and upsampled bilinearly to 28x28: blobs, no edges, uint8."""
    return _uint8(resize_bilinear(rng.random((count, 7, 7)), 28))[:, None]


def _drawn(images: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    return images[np.sort(rng.choice(len(images), count, replace=False))]


# --- generators: (folder, parents) -> the dataset's files ------------------------------------------

def generate_fmnist_six(folder: Path, parents: dict[str, Path]) -> None:
    parent = _fashion(parents)
    arrays = {}
    for split in ("train", "test"):
        fields = getattr(parent, split)
        keep = np.isin(fields["label"], SIX)
        arrays[f"x_{split}"], arrays[f"y_{split}"] = fields["input"][keep], fields["label"][keep].astype(np.int64)
    save_arrays(folder, arrays)


def generate_fmnist_four(folder: Path, parents: dict[str, Path]) -> None:
    test = _fashion(parents).test
    save_arrays(folder, {"x_test": test["input"][~np.isin(test["label"], SIX)]})


def generate_digits(folder: Path, parents: dict[str, Path] | None = None) -> None:
    save_arrays(folder, {"x_test": digits_28()})


def generate_inverted(folder: Path, parents: dict[str, Path]) -> None:
    save_arrays(folder, {"x_test": 255 - _fashion(parents).test["input"]})


def generate_permuted(folder: Path, parents: dict[str, Path]) -> None:
    images = _fashion(parents).test["input"]
    order = np.random.default_rng(SEEDS["permutation"]).permutation(int(np.prod(IMAGE)))
    save_arrays(folder, {"x_test": images.reshape(len(images), -1)[:, order].reshape(images.shape)})


def generate_gaussian(folder: Path, parents: dict[str, Path] | None = None) -> None:
    rng = np.random.default_rng(SEEDS["gaussian"])
    save_arrays(folder, {"x_test": _uint8(rng.normal(*GAUSSIAN, (NOISE_IMAGES, *IMAGE)))})


def generate_uniform(folder: Path, parents: dict[str, Path] | None = None) -> None:
    rng = np.random.default_rng(SEEDS["uniform"])
    save_arrays(folder, {"x_test": _uint8(rng.random((NOISE_IMAGES, *IMAGE)))})


def generate_patches(folder: Path, parents: dict[str, Path]) -> None:
    parent = _fashion(parents)
    rng = np.random.default_rng(SEEDS["patches"])
    save_arrays(folder, {f"x_{split}": shuffle_patches(_drawn(getattr(parent, split)["input"], count, rng), rng)
                         for split, count in OUTLIERS.items()})


def generate_smooth(folder: Path, parents: dict[str, Path] | None = None) -> None:
    rng = np.random.default_rng(SEEDS["smooth"])
    save_arrays(folder, {f"x_{split}": smooth_noise(count, rng) for split, count in OUTLIERS.items()})


# --- sequential Fashion-MNIST at several sizes (length generalisation) ----------------------------

SEQUENCE_SIDES = (14, 16, 19, 24)
"""Image sides of the sequential Fashion-MNIST datasets: trained at 14 (196 pixels), tested at 16,
19 and 24 (256, 361 and 576 pixels), as RIMs were on sequential MNIST (Goyal et al. 2021)."""
PIXELS_PER_STEP = 4
"""Pixels read per step (raster order), so a sequence is 49, 64, 91 or 144 steps: a quarter of the
pixel-by-pixel length, which a CPU trains in minutes; the ratio of lengths stays that of the pixels."""


def sequence_length(side: int) -> int:
    return -(-side * side // PIXELS_PER_STEP)


def pixel_sequences(images: np.ndarray, side: int) -> np.ndarray:
    """Images uint8 [N, 1, 28, 28] resized (bilinear) to side x side and read in raster order,
    `PIXELS_PER_STEP` pixels per step (the last step padded with black): uint8 [N, 4, steps]."""
    resized = _uint8(resize_bilinear(images[:, 0].astype(np.float64) / 255.0, side)).reshape(len(images), -1)
    padded = np.zeros((len(images), sequence_length(side) * PIXELS_PER_STEP), np.uint8)
    padded[:, :side * side] = resized
    return np.ascontiguousarray(padded.reshape(len(images), -1, PIXELS_PER_STEP).transpose(0, 2, 1))


def _generate_sequences(folder: Path, parents: dict[str, Path], side: int, splits: tuple[str, ...]) -> None:
    parent = _fashion(parents)
    arrays = {}
    for split in splits:
        fields = getattr(parent, split)
        arrays[f"x_{split}"] = pixel_sequences(fields["input"], side)
        arrays[f"y_{split}"] = fields["label"].astype(np.int64)
    save_arrays(folder, arrays)


def generate_seq_fmnist_14(folder: Path, parents: dict[str, Path]) -> None:
    _generate_sequences(folder, parents, 14, ("train", "test"))


def generate_seq_fmnist_16(folder: Path, parents: dict[str, Path]) -> None:
    _generate_sequences(folder, parents, 16, ("test",))


def generate_seq_fmnist_19(folder: Path, parents: dict[str, Path]) -> None:
    _generate_sequences(folder, parents, 19, ("test",))


def generate_seq_fmnist_24(folder: Path, parents: dict[str, Path]) -> None:
    _generate_sequences(folder, parents, 24, ("test",))


def read_seq_fmnist(folder: Path) -> Readout:
    """Pixel sequences uint8 [N, 4, steps] with their classes, the side read off the folder's name;
    the sides tested on only have an empty train split."""
    from pipeline.data.fashion_mnist import CLASSES

    name = folder.name
    side = next((s for s in SEQUENCE_SIDES if name.endswith(f"_{s}")), None)
    if side is None:
        raise PipelineError(f"{folder}: not a sequential Fashion-MNIST folder (seq_fmnist_<side>)")
    splits = ("train", "test") if side == SEQUENCE_SIDES[0] else ("test",)
    shape = (PIXELS_PER_STEP, sequence_length(side))
    layout = {f"{kind}_{split}": spec for split in splits
              for kind, spec in (("x", ("uint8", shape)), ("y", ("int64", ())))}
    arrays = load_arrays(folder, name, layout)
    empty = {"input": np.zeros((0, *shape), np.uint8), "label": np.zeros(0, np.int64)}
    train = {"input": arrays["x_train"], "label": arrays["y_train"]} if "train" in splits else empty
    return Readout(train, {"input": arrays["x_test"], "label": arrays["y_test"]}, tuple(CLASSES))


# --- readers ---------------------------------------------------------------------------------------

def read_fmnist_six(folder: Path) -> Readout:
    """The six kept classes' images and labels (0-5, Fashion-MNIST's own)."""
    from pipeline.data.fashion_mnist import CLASSES

    layout = {f"{kind}_{split}": spec for split in ("train", "test")
              for kind, spec in (("x", ("uint8", IMAGE)), ("y", ("int64", ())))}
    arrays = load_arrays(folder, "fmnist_six", layout)
    for split in ("train", "test"):
        labels = arrays[f"y_{split}"]
        if len(labels) and (labels.min() < 0 or labels.max() >= len(SIX)):
            raise PipelineError(f"{folder / f'y_{split}.npy'}: labels outside [0, {len(SIX)}) (a corrupt or "
                                "foreign file); run `pipeline fetch fmnist_six --force`")
    return Readout({"input": arrays["x_train"], "label": arrays["y_train"]},
                   {"input": arrays["x_test"], "label": arrays["y_test"]}, tuple(CLASSES[c] for c in SIX))


def _images(folder: Path, name: str, splits: tuple[str, ...]) -> Readout:
    arrays = load_arrays(folder, name, {f"x_{split}": ("uint8", IMAGE) for split in splits})
    empty = np.zeros((0, *IMAGE), np.uint8)
    return Readout(*({"input": arrays.get(f"x_{split}", empty)} for split in ("train", "test")))


def read_test_family(folder: Path) -> Readout:
    """OOD images for testing: a test split only (the train split is empty), unlabelled."""
    return _images(folder, folder.name, ("test",))


def read_outliers(folder: Path) -> Readout:
    """Outlier-exposure images: train (for training) and test (for choosing the margins), unlabelled."""
    return _images(folder, folder.name, ("train", "test"))
