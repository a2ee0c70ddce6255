"""The datasets the fetch stage knows: their files, checksums and where to find them.

Pure data, cheap to import: the spec validates `data.dataset` against these names.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Literal


@dataclass(frozen=True)
class RemoteFile:
    name: str
    sha256: str


@dataclass(frozen=True)
class Reference:
    """A published result on a dataset's test split, shown in reports beside ours."""

    model: str
    accuracy: float
    source: str


@dataclass(frozen=True)
class FieldSpec:
    """One named tensor of every example (a batch holds [B, *shape] of it)."""

    name: str
    dtype: Literal["uint8", "float32", "int64"]
    """uint8: intensities (pixels, frames), scaled to [0, 1] for a model; float32: values as they are;
    int64: integers (class labels, token ids, voken ids), which stay integers."""
    shape: tuple[int, ...] = ()
    """Of one example; () for a scalar such as a class label."""
    description: str = ""


@dataclass(frozen=True)
class DatasetSource:
    name: str
    description: str
    files: tuple[RemoteFile, ...]
    reader: str
    """`module:function` (folder) -> Readout: train and test examples as {field: array [N, ...]},
    and the class names where the dataset has class labels."""
    modality: Literal["image", "sequence", "video", "text", "image-text", "vector"]
    """What a model must take to train on it; each model kind declares the modalities it takes."""
    fields: tuple[FieldSpec, ...]
    """The tensors of each example. `input` is what an encoder reads; `label` (int64, the class)
    is there only where the dataset has class labels."""
    mirror_env: str
    """Environment variable naming a local folder that holds the files (tried first)."""
    mirror_dirs: tuple[str, ...] = ()
    """Local folders tried next (e.g. a distribution's data package)."""
    generator: str | None = None
    """`module:function` (folder, parents) that writes the files: a dataset made by code, not
    downloaded; `parents` maps each dataset of `derived_from` to its checked folder. What it writes
    is checked against the same sha256s as a download."""
    derived_from: tuple[str, ...] = ()
    """Datasets the generator reads (fetched and checked first): a dataset derived from another."""
    base_urls: tuple[str, ...] = ()
    """Tried last, in order: each file is downloaded from base_url + '/' + name."""
    fix_hint: str = ""
    """What to do when no source yields the files (besides setting mirror_env)."""
    references: tuple[Reference, ...] = ()

    def field(self, name: str) -> FieldSpec | None:
        return next((f for f in self.fields if f.name == name), None)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One example of the `input` field, channels first: [C, H, W] images, [C, L] sequences."""
        return self.field("input").shape

    @property
    def labelled(self) -> bool:
        return self.field("label") is not None

    def load_reader(self) -> Any:
        return _resolve(self.reader)

    def load_generator(self) -> Any:
        return _resolve(self.generator) if self.generator else None


@dataclass(frozen=True)
class Readout:
    """What a dataset's reader returns: each split as {field: array [N, ...]} and, for a labelled
    dataset, the class names (index = label)."""

    train: dict[str, Any]
    test: dict[str, Any]
    classes: tuple[str, ...] | None = None


def _resolve(target: str) -> Any:
    module_name, name = target.split(":")
    return getattr(importlib.import_module(module_name), name)


FASHION_MNIST = DatasetSource(
    name="fashion_mnist",
    description="Fashion-MNIST (Xiao et al. 2017): 60k/10k 28x28 grey images, 10 classes",
    files=(
        RemoteFile(
            "train-images-idx3-ubyte.gz",
            "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
        ),
        RemoteFile(
            "train-labels-idx1-ubyte.gz",
            "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
        ),
        RemoteFile(
            "t10k-images-idx3-ubyte.gz",
            "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
        ),
        RemoteFile(
            "t10k-labels-idx1-ubyte.gz",
            "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
        ),
    ),
    reader="pipeline.data.fashion_mnist:read",
    modality="image",
    fields=(FieldSpec("input", "uint8", (1, 28, 28), "grey image"), FieldSpec("label", "int64", (), "class")),
    mirror_env="FASHION_MNIST_DIR",
    mirror_dirs=("/usr/share/datasets/fashion-mnist",),
    base_urls=(
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com",
        "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion",
    ),
    fix_hint="install Debian's dataset package (apt-get install dataset-fashion-mnist)",
)

MNIST1D = DatasetSource(
    name="mnist1d",
    description="MNIST-1D (Greydanus 2020): 4000/1000 signals of 40 samples, 10 classes, generated",
    files=(
        RemoteFile("x_train.npy", "88324c8902778fbd2316ae1f8acbf36d87897390c1c2ad68212f4290790fa2b5"),
        RemoteFile("y_train.npy", "c718026182802e01693cbbad83b2af62a4e717da302e71815ac77fdbed4c5dde"),
        RemoteFile("x_test.npy", "d67069fc4db4b87677475f89583e9191285825f1eee33060f2fa2dc99fe5a53a"),
        RemoteFile("y_test.npy", "4134144e011c5abc45fc2a1f8fcad9556a4addd3bab819f191c3245d7018c243"),
    ),
    reader="pipeline.data.mnist1d:read",
    modality="sequence",
    fields=(FieldSpec("input", "float32", (1, 40), "signal"), FieldSpec("label", "int64", (), "class")),
    mirror_env="MNIST1D_DIR",
    generator="pipeline.data.mnist1d:generate",
    fix_hint="install the generator (pip install mnist1d)",
    references=tuple(
        Reference(model, accuracy, "Greydanus 2020, supervised, test split")
        for model, accuracy in (("logistic regression", 0.32), ("MLP", 0.68), ("CNN", 0.94), ("GRU", 0.91))
    ),
)

DATASETS: dict[str, DatasetSource] = {source.name: source for source in (FASHION_MNIST, MNIST1D)}
