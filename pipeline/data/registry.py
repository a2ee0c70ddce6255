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
    modality: Literal["image", "sequence", "series", "video", "text", "image-text", "vector"]
    """What a model must take to train on it; each model kind declares the modalities it takes.
    sequence: labelled sequences [C, L]; series: windows of one long series to forecast, with the
    next value at each step as the field `target` [C, L]."""
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

MNIST1D_IRREGULAR = DatasetSource(
    name="mnist1d_irregular",
    description="MNIST-1D irregularly sampled: half of each signal's 40 samples dropped (seeded), the 20 kept "
                "with the time since the previous one",
    files=(
        RemoteFile("x_train.npy", "31e8388b56b568b31fb6af03c04721ce6dce3b1b3520d992b055717357473ebf"),
        RemoteFile("y_train.npy", "c718026182802e01693cbbad83b2af62a4e717da302e71815ac77fdbed4c5dde"),
        RemoteFile("x_test.npy", "25734fe56cf8192d45ffebe40b0ff5d0027a5295db6156b70600b9c3490bf575"),
        RemoteFile("y_test.npy", "4134144e011c5abc45fc2a1f8fcad9556a4addd3bab819f191c3245d7018c243"),
    ),
    reader="pipeline.data.sequences:read_irregular",
    modality="sequence",
    fields=(FieldSpec("input", "float32", (2, 20), "kept values (row 0) and the time since the previous kept "
                                                   "sample (row 1)"),
            FieldSpec("label", "int64", (), "class")),
    mirror_env="MNIST1D_IRREGULAR_DIR",
    generator="pipeline.data.sequences:generate_irregular",
    derived_from=("mnist1d",),
    fix_hint="it is generated from mnist1d: run `pipeline fetch mnist1d` first",
)

MACKEY_GLASS = DatasetSource(
    name="mackey_glass",
    description="Mackey-Glass series (tau 17), generated by reservoirpy: windows of 100 steps, the next value "
                "at each step to forecast; 10k training steps, then 2k test steps",
    files=(
        RemoteFile("x_train.npy", "6ee5614215c39d0083d0d8b8d83b130e50611be2375cc0e820e3b640af62f0db"),
        RemoteFile("y_train.npy", "d7c84e537ea5520f7cb8413479905173aa41ba33bf341a858837469ee38bc39c"),
        RemoteFile("x_test.npy", "55ccdca848ba0e691a0084bf53ac74114486200893285969b997325f480e0b2d"),
        RemoteFile("y_test.npy", "a54385fa0ed06aff2ab94a19759a605f542bb301ac06b15e92414533cf76f1d5"),
    ),
    reader="pipeline.data.sequences:read_mackey_glass",
    modality="series",
    fields=(FieldSpec("input", "float32", (1, 100), "the series over 100 steps"),
            FieldSpec("target", "float32", (1, 100), "the next value at each of those steps")),
    mirror_env="MACKEY_GLASS_DIR",
    generator="pipeline.data.sequences:generate_mackey_glass",
    fix_hint="install the generator (pip install reservoirpy)",
)

def _moving_fmnist(name: str, side: int, description: str, sha256s: tuple[str, str, str, str]) -> DatasetSource:
    """A Moving Fashion-MNIST variant (pipeline.data.video.CANVASES[name]): its four files' sha256s
    in the order x_train, y_train, x_test, y_test."""
    names = ("x_train.npy", "y_train.npy", "x_test.npy", "y_test.npy")
    return DatasetSource(
        name=name,
        description=description,
        files=tuple(RemoteFile(file, sha) for file, sha in zip(names, sha256s, strict=True)),
        reader="pipeline.data.video:read",
        modality="video",
        fields=(FieldSpec("input", "uint8", (20, 1, side, side), "20 grey frames"),
                FieldSpec("labels", "int64", (2,), "the classes of the two moving items")),
        mirror_env=f"{name.upper()}_DIR",
        generator=f"pipeline.data.video:generate_{side}",
        derived_from=("fashion_mnist",),
        fix_hint="it is generated from fashion_mnist: run `pipeline fetch fashion_mnist` first",
    )


MOVING_FMNIST = _moving_fmnist(
    "moving_fmnist", 64,
    "Moving Fashion-MNIST: 3000/500 sequences of 20 frames on a 64x64 canvas, two Fashion-MNIST items moving at "
    "constant velocity and bouncing off the edges (training items from the training split, test items from the "
    "test split), generated",
    ("7b6d57794639316769e86be24cbbd1eeb6bda35e275e01923d10b824f2bad9fc",
     "b8418bc0f9dbb3c7b2ec904d507d43ebb35e68de6fc1feb470f6651fe83c81e7",
     "52430f4a349d5b311f2edcf2cd99f43ab804c2f8a4682d2e51cbf9635c8231c1",
     "b4382d906a87da70fea553821dc2842e0c0e5c9dcf93981180e751f3fa4a13dd"))

MOVING_FMNIST_32 = _moving_fmnist(
    "moving_fmnist_32", 32,
    "Moving Fashion-MNIST, the quick variant: 3000/500 sequences of 20 frames on a 32x32 canvas, items shrunk to "
    "14x14, generated",
    ("19db1704c85e638a312db6996d219e7cbb94bd2a8dcc15c69a9402d79080633e",
     "b8418bc0f9dbb3c7b2ec904d507d43ebb35e68de6fc1feb470f6651fe83c81e7",
     "e13ad3a57172c7f8622b836dcb548e9e3fe724e001fd90d0e4cdd15d2c3038f2",
     "b4382d906a87da70fea553821dc2842e0c0e5c9dcf93981180e751f3fa4a13dd"))

DATASETS: dict[str, DatasetSource] = {
    source.name: source for source in (FASHION_MNIST, MNIST1D, MNIST1D_IRREGULAR, MACKEY_GLASS, MOVING_FMNIST,
                                       MOVING_FMNIST_32)}
