"""CPC v2 on images (Henaff et al. 2019): a grid of overlapping patches, each encoded on its own;
a masked context network over the grid; one linear predictor per row offset; InfoNCE against
every other patch of the batch."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.models.base import SelfSupervised
from pipeline.models.cpc import CPCImageSpec, PatchAugmentSpec, PatchGridSpec
from pipeline.models.cpc.infonce import PerOffsetMetrics, offset_predictors
from pipeline.models.cpc.losses import grid_cpc_loss
from pipeline.spec.components import TrainSpec


def patchify(images: torch.Tensor, patch: PatchGridSpec, margin: int = 0) -> torch.Tensor:
    """Images [B, C, H, W] -> patches [B, R, Q, C, S, S] of the spec's grid (R rows, Q
    columns). With `margin` m, each patch comes with m extra pixels on every side (S = size + 2m),
    for random shifts; the grid itself does not move."""
    size = patch.size + 2 * margin
    padded = F.pad(images, [patch.padding + margin] * 4)
    tiles = padded.unfold(2, size, patch.stride).unfold(3, size, patch.stride)  # B, C, R, Q, S, S
    return tiles.permute(0, 2, 3, 1, 4, 5)


def shift_crop(patches: torch.Tensor, size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Each patch [N, C, S, S] cropped to size x size at its own random position: a random shift of
    up to (S - size) / 2 pixels either way, for all patches at once by index arithmetic."""
    n, _, big, _ = patches.shape
    room = big - size
    if room == 0:
        return patches
    dy = torch.randint(0, room + 1, (n,), device=patches.device, generator=generator)
    dx = torch.randint(0, room + 1, (n,), device=patches.device, generator=generator)
    offsets = torch.arange(size, device=patches.device)
    rows = (dy[:, None] + offsets)[:, None, :, None].expand(-1, patches.shape[1], -1, big)
    patches = patches.gather(2, rows)
    cols = (dx[:, None] + offsets)[:, None, None, :].expand(-1, patches.shape[1], size, -1)
    return patches.gather(3, cols)


def jitter_intensity(patches: torch.Tensor, augment: PatchAugmentSpec) -> torch.Tensor:
    """Per-patch brightness and contrast changes of patches [N, C, S, S] with values in [0, 1]."""
    n = patches.shape[0]
    shape = (n, 1, 1, 1)
    if augment.brightness:
        patches = patches * (1 + augment.brightness * (2 * torch.rand(shape, device=patches.device) - 1))
    if augment.contrast:
        mean = patches.mean(dim=(1, 2, 3), keepdim=True)
        factor = 1 + augment.contrast * (2 * torch.rand(shape, device=patches.device) - 1)
        patches = (patches - mean) * factor + mean
    return patches.clamp(0, 1)


def _norm(kind: str, channels: int) -> nn.Module:
    # Both normalise each patch on its own: BatchNorm would mix statistics across patches and let
    # a patch's code carry information about its neighbours (the targets).
    return nn.GroupNorm(min(8, channels), channels) if kind == "group" else nn.GroupNorm(1, channels)


class PatchEncoder(nn.Module):
    """Patches [N, C, S, S] -> codes [N, D]: 3x3 convs with GroupNorm/LayerNorm and ReLU, each
    after the first halving the resolution, then global average pooling."""

    def __init__(self, in_channels: int, widths: list[int], norm: str):
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for index, width in enumerate(widths):
            layers += [nn.Conv2d(channels, width, 3, stride=1 if index == 0 else 2, padding=1, bias=False),
                       _norm(norm, width), nn.ReLU(inplace=True)]
            channels = width
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.net = nn.Sequential(*layers)
        self.out_dim = channels

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        return self.net(patches)


class PatchGridEncoder(nn.Module):
    """The encoder used downstream: an image -> its patch grid -> each patch's code -> the code
    map [B, D, R, Q] average-pooled to feature_grid x feature_grid and flattened."""

    def __init__(self, spec: CPCImageSpec, in_channels: int):
        super().__init__()
        self.patch = spec.patch
        self.patches = PatchEncoder(in_channels, spec.encoder_widths, spec.norm)
        self.feature_grid = spec.feature_grid
        self.code_dim = self.patches.out_dim
        self.out_dim = self.code_dim * spec.feature_grid ** 2

    def code_map(self, patches: torch.Tensor) -> torch.Tensor:
        """Patches [B, R, Q, C, S, S] -> codes [B, D, R, Q]."""
        b, r, q = patches.shape[:3]
        codes = self.patches(patches.reshape(b * r * q, *patches.shape[3:]))
        return codes.view(b, r, q, -1).permute(0, 3, 1, 2)

    def pool(self, codes: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(codes, self.feature_grid).flatten(1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.pool(self.code_map(patchify(images, self.patch)))


class MaskedConv2d(nn.Conv2d):
    """A k x k convolution whose output at row i sees input rows <= i only: the kernel's rows below
    the centre are zeroed (and kept zero: the mask multiplies the weight at every call)."""

    def __init__(self, channels_in: int, channels_out: int, kernel: int):
        super().__init__(channels_in, channels_out, kernel, padding=kernel // 2)
        mask = torch.ones_like(self.weight)
        mask[:, :, kernel // 2 + 1:, :] = 0
        self.register_buffer("mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.weight * self.mask, self.bias)


class ChannelNorm(nn.Module):
    """LayerNorm over the channels of each grid position alone: unlike GroupNorm it mixes no
    positions, so it keeps the context network causal."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class MaskedBlock(nn.Module):
    def __init__(self, channels: int, kernel: int):
        super().__init__()
        self.body = nn.Sequential(ChannelNorm(channels), nn.ReLU(), MaskedConv2d(channels, channels, kernel),
                                  ChannelNorm(channels), nn.ReLU(), nn.Conv2d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ContextNetwork(nn.Module):
    """Codes [B, D, R, Q] -> context [B, H, R, Q]; the context at row i depends on rows <= i."""

    def __init__(self, code_dim: int, width: int, layers: int, kernel: int):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(code_dim, width, 1),
                                 *(MaskedBlock(width, kernel) for _ in range(layers)),
                                 ChannelNorm(width))

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return self.net(codes)


class CPCImage(PerOffsetMetrics, SelfSupervised):
    offset_title = "InfoNCE accuracy per row offset (true patch ranked first)"

    def __init__(self, spec: CPCImageSpec, train: TrainSpec, input_shape: tuple[int, ...], num_classes: int):
        spec.check_input(input_shape)
        super().__init__(PatchGridEncoder(spec, input_shape[0]), train, num_classes)
        self.spec = spec
        self.rows, self.cols = spec.patch.grid(input_shape[1], input_shape[2])
        code_dim = self.encoder.code_dim
        self.context = ContextNetwork(code_dim, spec.context_width, spec.context_layers, spec.context_kernel)
        self.offsets = list(range(spec.first_offset, spec.first_offset + spec.offsets))
        self.predictors = offset_predictors(len(self.offsets), spec.context_width, code_dim)

    def augmented_patches(self, images: torch.Tensor) -> torch.Tensor:
        """Patches [B, R, Q, C, S, S] of the batch, each shifted and jittered on its own."""
        augment = self.spec.augment
        if augment.flip:
            flip = torch.rand(len(images), device=images.device) < augment.flip
            images = torch.where(flip[:, None, None, None], images.flip(3), images)
        patches = patchify(images, self.spec.patch, margin=augment.jitter)
        b, r, q = patches.shape[:3]
        flat = patches.reshape(b * r * q, *patches.shape[3:])
        flat = jitter_intensity(shift_crop(flat, self.spec.patch.size), augment)
        return flat.view(b, r, q, *flat.shape[1:])

    def cpc_loss(self, codes: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """(mean loss over offsets, per-offset losses, per-offset accuracies) of codes [B, D, R, Q]
        (`grid_cpc_loss` with this model's context network and predictors)."""
        return grid_cpc_loss(codes, self.context(codes), self.offsets, self.predictors)

    def ssl_step(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        codes = self.encoder.code_map(self.augmented_patches(images))
        loss, losses, accuracies = self.cpc_loss(codes)
        self.log_offsets(losses, accuracies, len(images))
        return loss, self.encoder.pool(codes)
