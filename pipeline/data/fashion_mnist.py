"""Fashion-MNIST: the IDX reader and the four files as arrays."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from pipeline.data.registry import Readout
from pipeline.errors import PipelineError

CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (gzipped or not): magic 0x0000, dtype byte, ndim byte, then big-endian
    uint32 dimensions and the data."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as err:
        raise PipelineError(f"{path}: cannot read it ({err}); run `pipeline fetch fashion_mnist --force`") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        raise PipelineError(f"{path}: not an IDX file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_DTYPES[raw[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise PipelineError(
            f"{path}: holds {len(raw) - header} bytes of data, the header promises {expected}"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def load_split(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [N, 28, 28], labels int64 [N]) of split 'train' or 't10k'."""
    images = read_idx(folder / f"{split}-images-idx3-ubyte.gz")
    labels = read_idx(folder / f"{split}-labels-idx1-ubyte.gz").astype(np.int64)
    if len(images) != len(labels):
        raise PipelineError(f"{folder}: {len(images)} {split} images but {len(labels)} labels")
    return images, labels


def read(folder: Path) -> Readout:
    """Images uint8 [N, 1, 28, 28] (`input`) and their classes (`label`), train and test."""
    train_x, train_y = load_split(folder, "train")
    test_x, test_y = load_split(folder, "t10k")
    return Readout({"input": train_x[:, None], "label": train_y}, {"input": test_x[:, None], "label": test_y},
                   CLASSES)
