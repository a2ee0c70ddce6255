"""REMIND's product quantiser as functions of tensors: a latent's C-vector at each position is cut
into M sub-vectors of C / M dimensions, each replaced by the index of its nearest of 2^bits
centroids (one codebook per sub-quantiser). The centroids are fitted by faiss's k-means; encoding
(nearest centroid) and decoding (the centroids indexed) are plain torch, so they need no faiss
state. `REMIND` (`remind.py`) keeps the centroids and codes as buffers and calls these."""

from __future__ import annotations

import logging
import math

import numpy as np
import torch

from pipeline.extras import require


def packed_code_bytes(subquantizers: int, bits: int) -> int:
    """Bytes of one position's code, packed as faiss packs it: ceil(M * bits / 8)."""
    return math.ceil(subquantizers * bits / 8)


def latent_vectors(latents: torch.Tensor) -> torch.Tensor:
    """Latents [N, C, *positions] (a map [N, C, H, W], a sequence's [N, C, L], or a vector [N, D]) as
    the position vectors the quantiser reads: [N, positions, C]."""
    if latents.dim() == 2:
        return latents[:, None, :]
    return latents.flatten(2).transpose(1, 2)


def latents_from_vectors(vectors: torch.Tensor, shape: list[int]) -> torch.Tensor:
    """Inverse of `latent_vectors` for latents of shape `shape` ([C, *positions], or [D])."""
    if len(shape) == 1:
        return vectors[:, 0, :]
    return vectors.transpose(1, 2).reshape(len(vectors), *shape)


def train_centroids(points: np.ndarray, subquantizers: int, bits: int) -> np.ndarray:
    """faiss's product quantiser fitted (k-means per sub-quantiser) on `points` [P, C] (float32):
    its centroids [M, 2^bits, C / M], float32."""
    # faiss's loader logs each CPU-specific build it does not find before taking the generic one.
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    faiss = require("faiss", "continual", "REMIND's product quantiser")

    quantizer = faiss.ProductQuantizer(points.shape[1], subquantizers, bits)
    quantizer.train(points)
    centroids = faiss.vector_to_array(quantizer.centroids).reshape(subquantizers, 2**bits, -1)
    return centroids.copy()


def nearest_codes(vectors: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Codes [N, P, M] (int64) of vectors [N, P, C]: the index of each sub-vector's nearest
    centroid (Euclidean) among its sub-quantiser's `centroids` [M, K, C / M]; distances in
    chunks of about 2^24 entries."""
    count, positions, _ = vectors.shape
    m, k, sub = centroids.shape
    flat = vectors.reshape(-1, m, sub).transpose(0, 1)  # [M, P, C / M]
    step = max(1, (1 << 24) // (m * k))
    codes = torch.cat([torch.cdist(flat[:, start:start + step], centroids).argmin(dim=2)
                       for start in range(0, flat.shape[1], step)], dim=1)  # [M, P]
    return codes.t().reshape(count, positions, m)


def centroid_vectors(codes: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Vectors [N, P, C] from codes [N, P, M]: each sub-quantiser's centroid its code indexes, the
    M sub-vectors concatenated (on the centroids' device)."""
    m, _, sub = centroids.shape
    codes = codes.long().to(centroids.device)
    parts = centroids[torch.arange(m, device=codes.device), codes]  # [N, P, M, C / M]
    return parts.reshape(len(codes), codes.shape[1], m * sub)
