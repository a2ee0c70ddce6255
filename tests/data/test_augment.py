"""Batched augmentations: shapes, ranges, per-image randomness, and the crop geometry."""

from __future__ import annotations

import torch

from pipeline.data.augment import MultiCrop, color_jitter, random_erase, random_resized_crop
from pipeline.models.swav import MultiCropSpec


def test_full_crop_without_flip_is_the_identity():
    images = torch.rand(4, 1, 28, 28)
    out = random_resized_crop(images, 28, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    assert torch.allclose(out, images, atol=1e-5)


def test_flip_mirrors_the_image():
    images = torch.rand(4, 1, 28, 28)
    out = random_resized_crop(images, 28, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip=1.0)
    assert torch.allclose(out, images.flip(-1), atol=1e-5)


def test_crops_differ_per_image_and_keep_their_range():
    images = torch.rand(1, 1, 28, 28).expand(16, 1, 28, 28).contiguous()
    out = random_resized_crop(images, 14, scale=(0.1, 0.5), flip=0.5,
                              generator=torch.Generator().manual_seed(0))
    assert out.shape == (16, 1, 14, 14)
    assert out.min() >= 0
    assert out.max() <= 1
    assert len({tuple(o.flatten()[:20].tolist()) for o in out}) == 16


def test_jitter_and_erase():
    images = torch.full((8, 1, 28, 28), 0.5)
    jittered = color_jitter(images, brightness=0.4, contrast=0.0)
    factors = jittered.mean(dim=(1, 2, 3)) / 0.5
    assert ((factors >= 0.6 - 1e-6) & (factors <= 1.4 + 1e-6)).all()
    assert factors.std() > 0
    erased = random_erase(images, probability=1.0)
    assert ((erased == 0).flatten(1).sum(1) > 0).all()
    assert torch.equal(random_erase(images, probability=0.0), images)


def test_multicrop_gives_the_declared_views():
    spec = MultiCropSpec(large_crops=2, small_crops=3, large_size=28, small_size=12)
    large, small = MultiCrop(spec)(torch.rand(5, 1, 28, 28))
    assert [v.shape for v in large] == [(5, 1, 28, 28)] * 2
    assert [v.shape for v in small] == [(5, 1, 12, 12)] * 3
