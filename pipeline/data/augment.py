"""Augmentations as batched tensor operations: one call transforms a whole batch, on whatever
device it lives on, with per-image random parameters. No per-image PIL round trips."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def random_resized_crop(
    images: torch.Tensor,
    size: int,
    scale: tuple[float, float],
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    flip: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Crop a random box of each image (area fraction in `scale`, aspect ratio in `ratio`),
    optionally mirror it, and resize it to size x size: one affine grid per image, one
    grid_sample for the batch. images: [B, C, H, W] float."""
    batch = images.shape[0]
    device, dtype = images.device, images.dtype

    def uniform(low: float, high: float) -> torch.Tensor:
        return torch.rand(batch, device=device, dtype=dtype, generator=generator) * (high - low) + low

    area = uniform(*scale)
    log_ratio = uniform(math.log(ratio[0]), math.log(ratio[1]))
    aspect = torch.exp(log_ratio)
    # Box width and height as fractions of the image; the affine grid spans [-1, 1].
    width = torch.sqrt(area * aspect).clamp(max=1.0)
    height = torch.sqrt(area / aspect).clamp(max=1.0)
    center_x = uniform(-1.0, 1.0) * (1 - width)
    center_y = uniform(-1.0, 1.0) * (1 - height)
    mirror = torch.where(
        torch.rand(batch, device=device, generator=generator) < flip,
        -torch.ones((), device=device, dtype=dtype),
        torch.ones((), device=device, dtype=dtype),
    )
    theta = torch.zeros(batch, 2, 3, device=device, dtype=dtype)
    theta[:, 0, 0] = width * mirror
    theta[:, 0, 2] = center_x
    theta[:, 1, 1] = height
    theta[:, 1, 2] = center_y
    grid = F.affine_grid(theta, [batch, images.shape[1], size, size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def color_jitter(
    images: torch.Tensor,
    brightness: float,
    contrast: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Per-image brightness and contrast factors in [1 - x, 1 + x], in a random order per
    batch, clamped to [0, 1]."""
    batch = images.shape[0]
    shape = (batch, 1, 1, 1)

    def factor(amount: float) -> torch.Tensor:
        noise = torch.rand(shape, device=images.device, dtype=images.dtype, generator=generator)
        return 1 + (2 * noise - 1) * amount

    if brightness > 0:
        images = images * factor(brightness)
    if contrast > 0:
        mean = images.mean(dim=(1, 2, 3), keepdim=True)
        images = (images - mean) * factor(contrast) + mean
    return images.clamp(0.0, 1.0)


def random_erase(
    images: torch.Tensor,
    probability: float,
    scale: tuple[float, float] = (0.02, 0.15),
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Zero a random square box (area fraction in `scale`) in each image with `probability`."""
    if probability <= 0:
        return images
    batch, _, height, width = images.shape
    device = images.device
    area = torch.rand(batch, device=device, generator=generator) * (scale[1] - scale[0]) + scale[0]
    side = torch.sqrt(area)
    top = torch.rand(batch, device=device, generator=generator) * (1 - side)
    left = torch.rand(batch, device=device, generator=generator) * (1 - side)
    rows = torch.linspace(0, 1, height, device=device).view(1, height, 1)
    cols = torch.linspace(0, 1, width, device=device).view(1, 1, width)
    inside = (
        (rows >= top.view(-1, 1, 1)) & (rows <= (top + side).view(-1, 1, 1))
        & (cols >= left.view(-1, 1, 1)) & (cols <= (left + side).view(-1, 1, 1))
    )
    apply = torch.rand(batch, device=device, generator=generator) < probability
    mask = inside & apply.view(-1, 1, 1)
    return images.masked_fill(mask.unsqueeze(1), 0.0)


class MultiCrop:
    """SwAV's multi-crop: `large` crops then `small` crops of every image, each a batched op."""

    def __init__(self, spec) -> None:  # spec: pipeline.models.swav.MultiCropSpec
        self.spec = spec

    def _view(self, images: torch.Tensor, size: int, scale: tuple[float, float]) -> torch.Tensor:
        s = self.spec
        view = random_resized_crop(images, size, scale, flip=s.flip)
        view = color_jitter(view, s.brightness, s.contrast)
        return random_erase(view, s.erase)

    def __call__(self, images: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        s = self.spec
        large = [self._view(images, s.large_size, s.large_scale) for _ in range(s.large_crops)]
        small = [self._view(images, s.small_size, s.small_scale) for _ in range(s.small_crops)]
        return large, small
