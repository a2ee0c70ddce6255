"""A dataset plugin: `toy_blobs`, Gaussian blobs in 16 dimensions (4 classes, 800 training and 200
test examples, seeded), made by code at fetch time and checked against its sha256s like a download."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.data.source import DatasetSource, FieldSpec, Readout, RemoteFile
from pipeline.plugins import Plugin

CLASSES = ("north", "east", "south", "west")
FILES = ("x_train.npy", "y_train.npy", "x_test.npy", "y_test.npy")


def generate(folder: Path, parents: dict[str, Path] | None = None) -> None:
    """Each class a blob around its own centre (unit noise); float32 signals [N, 1, 16], int64 labels."""
    rng = np.random.default_rng(7)
    centres = rng.normal(0.0, 1.5, size=(len(CLASSES), 16))
    for split, count in (("train", 800), ("test", 200)):
        labels = np.arange(count) % len(CLASSES)
        inputs = centres[labels] + rng.normal(size=(count, 16))
        np.save(folder / f"x_{split}.npy", inputs.astype(np.float32)[:, None], allow_pickle=False)
        np.save(folder / f"y_{split}.npy", labels.astype(np.int64), allow_pickle=False)


def read(folder: Path) -> Readout:
    x_train, y_train, x_test, y_test = (np.load(folder / name, allow_pickle=False) for name in FILES)
    return Readout({"input": x_train, "label": y_train}, {"input": x_test, "label": y_test}, CLASSES)


TOY_BLOBS = DatasetSource(
    name="toy_blobs",
    description="Gaussian blobs: 800/200 vectors of 16 values, 4 classes, generated",
    files=(
        RemoteFile("x_train.npy", "9c45b67471f9a67cbe2095e46f06ea5538a0470559b5c779c9072d8c7bbdaf65"),
        RemoteFile("y_train.npy", "6b3b8e2d027d3163d1ea2ded317e87a0e3dfe19b2cb54f0563cb24241c60283a"),
        RemoteFile("x_test.npy", "402a84494d57a4fc860c4a45fafdc2df943d66e848ec2b5ce4e61dfd22443d1a"),
        RemoteFile("y_test.npy", "c3387725c2394bbf37abf45cd6e186c20f503c91c3b2f22319fc6f8b74b52c2f"),
    ),
    reader="toy_dataset:read",
    modality="sequence",
    fields=(FieldSpec("input", "float32", (1, 16), "a point"), FieldSpec("label", "int64", (), "its blob")),
    mirror_env="TOY_BLOBS_DIR",
    generator="toy_dataset:generate",
)

PLUGIN = Plugin(name="toy_dataset", summary="A toy dataset of Gaussian blobs", datasets=(TOY_BLOBS,))
