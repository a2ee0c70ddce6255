"""The out-of-distribution family's datasets, as sources: pure data, cheap to import. The code that
generates and reads them is in `data.py`, which says which group each belongs to."""

from __future__ import annotations

import dataclasses

from pipeline.data.source import DatasetSource, FieldSpec, RemoteFile

_IMAGE = (FieldSpec("input", "uint8", (1, 28, 28), "grey image"),)
_DATA = "pipeline.models.ood.data"


def _source(name: str, description: str, sha256s: dict[str, str], generator: str, reader: str,
            fields=_IMAGE, fashion: bool = True) -> DatasetSource:
    parent = "run `pipeline fetch fashion_mnist` first, then " if fashion else ""
    return DatasetSource(
        name=name, description=description, files=tuple(RemoteFile(f, sha) for f, sha in sha256s.items()),
        reader=f"{_DATA}:{reader}", modality="image", fields=fields, mirror_env=f"{name.upper()}_DIR",
        generator=f"{_DATA}:{generator}", derived_from=("fashion_mnist",) if fashion else (),
        fix_hint=f"it is generated{' from fashion_mnist' if fashion else ''}: {parent}"
                 f"`pipeline fetch {name} --force`")


FMNIST_SIX = _source(
    "fmnist_six", "Fashion-MNIST's first six classes (T-shirt/top, Trouser, Pullover, Dress, Coat, Sandal): "
                  "36k/6k images, the in-distribution of the near-OOD setting; generated",
    {"x_train.npy": "4c0262c6d4f1137afcf0cac687dc679eaa4a44caf6341e3b5134a63346743b12",
     "y_train.npy": "ebb4d6d674e4118a3790722bf3e80aa014f557c5b970842a7124d6bb3af5d337",
     "x_test.npy": "3e4d3cbf2a02e07b7d1f65fb4f38397a58e29107889f13395a493ea972cde50c",
     "y_test.npy": "7db79fe7ae597945e8c2df8e8cb8a366d8e39aea0c7def208ead6627dfb39c87"},
    "generate_fmnist_six", "read_fmnist_six", fields=(*_IMAGE, FieldSpec("label", "int64", (), "class")))

TEST_FAMILIES = (
    _source("ood_digits", "OOD test images: scikit-learn's 1797 handwritten digits, 8x8 upscaled to 20x20 and "
                          "centred in 28x28 as MNIST's are; generated",
            {"x_test.npy": "ba5ce7c8bbf889cb7f13651ee8a848f3a1aeaefaa280140b4af6c049f60ef9fe"},
            "generate_digits", "read_test_family", fashion=False),
    _source("ood_fmnist_inverted", "OOD test images: the 10k Fashion-MNIST test images inverted (255 - x); generated",
            {"x_test.npy": "d3b77e599a41961068600d0976557e887dec158552445a7860c1594841ba533f"},
            "generate_inverted", "read_test_family"),
    _source("ood_fmnist_permuted", "OOD test images: the 10k Fashion-MNIST test images, pixels under one fixed "
                                   "random permutation; generated",
            {"x_test.npy": "e7b85414dd5702eaa53f74929b559d23c3c995278f6896949292816283065719"},
            "generate_permuted", "read_test_family"),
    _source("ood_gaussian", "OOD test images: 10k of i.i.d. Gaussian pixels N(0.5, 0.25^2), clipped; generated",
            {"x_test.npy": "53f606bb90c69d2a2f457235aa3a88436ae7f90da58191d6e3188f29b7000fcb"},
            "generate_gaussian", "read_test_family", fashion=False),
    _source("ood_uniform", "OOD test images: 10k of i.i.d. uniform pixels; generated",
            {"x_test.npy": "444380f6f33c5cc70a1d95b20e0fb758c0d7254cd58db59faabd8a9c0786485e"},
            "generate_uniform", "read_test_family", fashion=False),
    _source("ood_fmnist_four", "Near-OOD test images for a fmnist_six model: the 4k Fashion-MNIST test images of "
                               "Shirt, Sneaker, Bag and Ankle boot; generated",
            {"x_test.npy": "e928c8fc3fc7b60083f2f97e1c3ac80be2bdda1cf61c728f662cd95971cea2c3"},
            "generate_fmnist_four", "read_test_family"),
)
"""Read only by the `ood_detection` task: never trained on, never used to choose a setting."""

OUTLIER_FAMILIES = (
    _source("oe_fmnist_patches", "Outlier-exposure images: Fashion-MNIST images with their 16 7x7 patches shuffled, "
                                 "20k from the training split (for training), 2k from the test split (for choosing "
                                 "the margins); generated",
            {"x_train.npy": "e656583acc27c6767c9a5bbdddc9147a0cfe8c22eaab4ef8ade25cc6c1ecb424",
             "x_test.npy": "f2d15f53883efa458e630dccf2f0acd1b29467290dc9a0ac2bbffea5ad79ce57"},
            "generate_patches", "read_outliers"),
    _source("oe_smooth_noise", "Outlier-exposure images: uniform noise drawn at 7x7 and upsampled bilinearly to 28x28, "
                               "20k (for training) and 2k (for choosing the margins); generated",
            {"x_train.npy": "a6af95739dc57d5e3b451e1477adaa00b85d21e6aaf83348c315997ea9f8fbe6",
             "x_test.npy": "786f57f1cadac6661521c20ed6efe99aa2ac4636cf0225c5b11e0fe90d23fdc4"},
            "generate_smooth", "read_outliers", fashion=False),
)
"""Read only by outlier-exposure training (train split) and the choice of its margins (test split)."""

_SEQUENCE_SHA256S = {
    14: {"x_train.npy": "78caea4f9a2a56c838d49abafdf4fece0973725a68270a6242dfc86165bac3ba",
         "y_train.npy": "eb6efccc70db136ce327076edeadbbcba39b38ab16fd8f89b0625f62fc605f24",
         "x_test.npy": "0650964279df5ce86f5148dfe0378968b481cd98a51b8c1277305f4636cdf2a3",
         "y_test.npy": "33e7c41e1d27e7ea46528a86fd6d54e0eb0d60f705e95ae5e9c956635f269cbc"},
    16: {"x_test.npy": "0dbbeb94eb47d0be774c8e560488ac2fd98cb90c94fa7207621c56567d563a83",
         "y_test.npy": "33e7c41e1d27e7ea46528a86fd6d54e0eb0d60f705e95ae5e9c956635f269cbc"},
    19: {"x_test.npy": "1821bfa0f9fac86a473584efd1b34bedf290d11fba219924aeae52d507a4887d",
         "y_test.npy": "33e7c41e1d27e7ea46528a86fd6d54e0eb0d60f705e95ae5e9c956635f269cbc"},
    24: {"x_test.npy": "3e7d6c748985f9b51b8dbfb6d11aba0dbecc17c7ac38a68a1ec798fd3f5523da",
         "y_test.npy": "33e7c41e1d27e7ea46528a86fd6d54e0eb0d60f705e95ae5e9c956635f269cbc"},
}


def _sequences(side: int) -> DatasetSource:
    train = side == 14
    source = _source(
        f"seq_fmnist_{side}",
        f"Sequential Fashion-MNIST at {side}x{side}: the images resized (bilinear) and read 4 pixels per step, "
        f"{-(-side * side // 4)} steps; " + ("60k/10k, the training length" if train else "the 10k test images only, a "
                                    "length to test on") + "; generated",
        _SEQUENCE_SHA256S[side], f"generate_seq_fmnist_{side}", "read_seq_fmnist",
        fields=(FieldSpec("input", "uint8", (4, -(-side * side // 4)), "pixel sequence, 4 pixels a step"),
                FieldSpec("label", "int64", (), "class")))
    return dataclasses.replace(source, modality="sequence")


SEQUENCES = tuple(_sequences(side) for side in (14, 16, 19, 24))
"""Sequential Fashion-MNIST: trained at 14x14 (`seq_fmnist_14`), tested at longer lengths."""
LENGTH_NAMES = tuple(source.name for source in SEQUENCES[1:])

TEST_NAMES = tuple(source.name for source in TEST_FAMILIES)
OUTLIER_NAMES = tuple(source.name for source in OUTLIER_FAMILIES)
DATASETS = (FMNIST_SIX, *TEST_FAMILIES, *OUTLIER_FAMILIES, *SEQUENCES)
