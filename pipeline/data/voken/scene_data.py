"""`fmnist_scenes`: rendered scenes of Fashion-MNIST items and their captions, the image-text pairs a
token-image matcher learns from."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from pipeline.data.fashion_mnist import load_split
from pipeline.data.registry import Readout
from pipeline.data.voken.captions import describe
from pipeline.data.voken.constants import CAPTION_LENGTH, SCENES, SEEDS
from pipeline.data.voken.files import _load, _save
from pipeline.data.voken.scenes import Scene, render, sample_scene, scene_items
from pipeline.data.voken.tokenizer import encode, load_tokenizer


def make_scenes(images: np.ndarray, labels: np.ndarray, count: int, rng: np.random.Generator,
                fits: Callable[[str], bool] | None = None) -> tuple[list[Scene], list[str], np.ndarray]:
    """`count` scenes of items drawn from (images, labels), their captions and their pictures
    uint8 [count, 1, CANVAS, CANVAS]."""
    scenes, captions = [], []
    for _ in range(count):
        scenes.append(sample_scene(rng, labels))
        captions.append(describe(scenes[-1], rng, fits))
    pictures = np.stack([render(scene, images) for scene in scenes])[:, None]
    return scenes, captions, pictures


def generate_scenes(folder: Path, parents: dict[str, Path]) -> None:
    """Training scenes from Fashion-MNIST's training items, test scenes from its test items:
    pictures (x), caption ids (t), their word classes (w) and the item classes (i)."""
    tokenizer = load_tokenizer(parents["wordnet_corpus"])

    def fits(text: str) -> bool:
        return len(tokenizer.encode(text).ids) <= CAPTION_LENGTH - 2

    for split, source in (("train", "train"), ("test", "t10k")):
        images, labels = load_split(parents["fashion_mnist"], source)
        rng = np.random.default_rng(SEEDS[f"scenes_{split}"])
        scenes, captions, pictures = make_scenes(images, labels, SCENES[split], rng, fits)
        ids, classes = encode(tokenizer, captions, CAPTION_LENGTH)
        _save(folder, {f"x_{split}": pictures, f"t_{split}": ids, f"w_{split}": classes,
                       f"i_{split}": scene_items(scenes)})


def read_scenes(folder: Path) -> Readout:
    """Pictures uint8 [N, 1, 56, 56] (`input`), caption ids (`tokens`) and word classes
    (`word_class`) int64 [N, 24], item classes (`items`) int64 [N, 4]; no labels."""
    fields = {"x": "input", "t": "tokens", "w": "word_class", "i": "items"}
    arrays = _load(folder, [f"{key}_{split}" for split in ("train", "test") for key in fields], "fmnist_scenes")
    train, test = ({field: arrays[f"{key}_{split}"] for key, field in fields.items()} for split in ("train", "test"))
    return Readout(train, test)
