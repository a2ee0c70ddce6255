"""REMIND's product quantiser as functions (`strategies.quantizer`), and the latent-replay modules'
split: `latent` still gives the strategies that moved to `ar1` and `remind`."""

from __future__ import annotations

import importlib

import pytest
import torch

from pipeline.models.continual.strategies.quantizer import (
    centroid_vectors,
    latent_vectors,
    latents_from_vectors,
    nearest_codes,
    packed_code_bytes,
)


@pytest.mark.parametrize("shape", [(5,), (4, 3), (4, 2, 3)])
def test_latents_and_position_vectors_round_trip(shape: tuple[int, ...]):
    latents = torch.randn(2, *shape)
    vectors = latent_vectors(latents)
    positions = 1 if len(shape) == 1 else torch.Size(shape[1:]).numel()
    assert vectors.shape == (2, positions, shape[0])
    if len(shape) == 3:  # the channels at position (y, x)
        assert torch.equal(vectors[1, 1 * 3 + 2], latents[1, :, 1, 2])
    assert torch.equal(latents_from_vectors(vectors, list(shape)), latents)


def test_codes_are_the_nearest_centroids_and_decode_to_them():
    torch.manual_seed(0)
    centroids = torch.randn(2, 4, 3)  # M = 2 sub-quantisers of 4 centroids, C / M = 3
    vectors = torch.randn(5, 6, 6)  # N, P, C
    codes = nearest_codes(vectors, centroids)
    assert codes.shape == (5, 6, 2)
    assert codes.dtype == torch.int64
    for n in range(5):
        for p in range(6):
            for m in range(2):
                distances = (centroids[m] - vectors[n, p, 3 * m: 3 * m + 3]).pow(2).sum(1)
                assert codes[n, p, m] == distances.argmin()
    decoded = centroid_vectors(codes.to(torch.uint8), centroids)
    assert decoded.shape == vectors.shape
    assert torch.equal(decoded[2, 3, 3:], centroids[1, codes[2, 3, 1]])
    assert torch.equal(nearest_codes(decoded, centroids), codes)  # a centroid is its own nearest


def test_packed_code_bytes():
    assert packed_code_bytes(1, 8) == 1
    assert packed_code_bytes(2, 5) == 2
    assert packed_code_bytes(8, 6) == 6


def test_latent_still_gives_the_strategies_that_moved():
    latent = importlib.import_module("pipeline.models.continual.strategies.latent")
    ar1 = importlib.import_module("pipeline.models.continual.strategies.ar1")
    remind = importlib.import_module("pipeline.models.continual.strategies.remind")
    assert latent.AR1 is ar1.AR1
    assert latent.REMIND is remind.REMIND
    assert issubclass(ar1.AR1, latent.LatentReplay)
    assert issubclass(remind.REMIND, latent.LatentReplay)
    with pytest.raises(AttributeError):
        _ = latent.Missing
