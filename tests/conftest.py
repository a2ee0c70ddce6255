from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from pipeline.data.datamodule import Splits
from pipeline.data.fetch import fetch_dataset
from pipeline.data.registry import FASHION_MNIST

ROOT = Path(__file__).resolve().parent.parent
FASHION_MNIST_SYSTEM = Path("/usr/share/datasets/fashion-mnist")
WORDNET_SYSTEM = Path("/usr/share/wordnet")


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty project root: outputs and the MLflow store land in tmp_path, not the checkout."""
    (tmp_path / "specs").mkdir()
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.setenv("PIPELINE_ROOT", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


@pytest.fixture
def tiny_splits() -> Splits:
    """Random 28x28 images in 10 classes, a class-dependent bright square in each, so there is
    something to learn; small enough for a CPU step in a fraction of a second."""
    generator = torch.Generator().manual_seed(0)

    def make(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.arange(n) % 10
        images = (torch.rand(n, 1, 28, 28, generator=generator) * 60).to(torch.uint8)
        for i, label in enumerate(labels.tolist()):
            row, col = divmod(label, 5)
            images[i, 0, 4 + 10 * row: 12 + 10 * row, 2 + 5 * col: 7 + 5 * col] = 250
        return images, labels

    return Splits.of_pairs(train=make(64), val=make(32), test=make(32), classes=tuple(str(i) for i in range(10)))


def fashion_mnist_available() -> bool:
    folder = os.environ.get("FASHION_MNIST_DIR")
    return (Path(folder) if folder else FASHION_MNIST_SYSTEM).joinpath("train-images-idx3-ubyte.gz").is_file()


needs_fashion_mnist = pytest.mark.skipif(
    not fashion_mnist_available(),
    reason="Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist; make test does it)",
)


def wordnet_available() -> bool:
    folder = os.environ.get("WORDNET_DIR")
    return (Path(folder) if folder else WORDNET_SYSTEM).joinpath("data.noun").is_file()


needs_wordnet = pytest.mark.skipif(
    not wordnet_available(),
    reason="WordNet is not installed (apt-get install wordnet-base; make test does it)",
)


def tiny_spec(name: str, images: int = 256, **train) -> str:
    """A SwAV spec small enough to train for real in seconds on a CPU."""
    train = {"max_epochs": 1, **train}
    return (
        f"name: {name}\n"
        f"data: {{train_subset: {images}, batch_size: 64}}\n"
        "model:\n"
        "  kind: swav\n"
        "  prototypes: 10\n"
        "  projection_hidden_dim: 32\n"
        "  projection_dim: 16\n"
        "  freeze_prototypes_steps: 0\n"
        "  backbone: {widths: [8, 16]}\n"
        "  multicrop: {small_crops: 1}\n"
        f"train: {{{', '.join(f'{k}: {v}' for k, v in train.items())}}}\n"
    )


@pytest.fixture
def fmnist(project: Path) -> Path:
    """A project whose data/ holds the real Fashion-MNIST."""
    fetch_dataset(FASHION_MNIST, root=project / "data")
    return project
