"""The datasets the fetch stage knows: their files, checksums and where to find them.

Pure data, cheap to import: the spec validates `data.dataset` against these names.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RemoteFile:
    name: str
    sha256: str


@dataclass(frozen=True)
class DatasetSource:
    name: str
    description: str
    files: tuple[RemoteFile, ...]
    mirror_env: str
    """Environment variable naming a local folder that holds the files (tried first)."""
    mirror_dirs: tuple[str, ...]
    """Local folders tried next (e.g. a distribution's data package)."""
    base_urls: tuple[str, ...]
    """Tried last, in order: each file is downloaded from base_url + '/' + name."""


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
    mirror_env="FASHION_MNIST_DIR",
    mirror_dirs=("/usr/share/datasets/fashion-mnist",),
    base_urls=(
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com",
        "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion",
    ),
)

DATASETS: dict[str, DatasetSource] = {FASHION_MNIST.name: FASHION_MNIST}
