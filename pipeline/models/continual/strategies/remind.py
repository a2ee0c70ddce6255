"""REMIND (Hayes et al. 2020):
- the lower network (an upstream encoder's first stages) is frozen from the start;
- its activations are feature maps [C, H, W] (or vectors [D], taken as C = D, H = W = 1); the
  C-vector at each position is product-quantised: `subquantizers` (M) sub-vectors of C / M
  dimensions, each replaced by the index of its nearest of 2^`bits` centroids. The quantiser is
  fitted (faiss k-means) when the first phase starts, on `quantizer_samples` random examples of
  experience 0, and from then on every latent the upper network reads, the current batch's and
  the test examples' included, is quantised and reconstructed, as REMIND does, so that training
  and test inputs and replayed ones all come from the same space;
- after each experience, its examples' codes join a class-balanced buffer (`LatentReplay`'s, in
  `latent.py`) with all of the experience the budget allows; each step decodes a random draw of
  `batch_size` of them and trains the upper network on them beside the current batch;
- REMIND's augmentations, as its authors' code applies them, where a spec asks for them (off by
  default): every map a step trains on (the current batch's and the replayed ones) is a random
  resized crop of itself (`crop_scale` of its area, resized back bilinearly), and the replayed
  part is drawn twice over and mixed in pairs (mixup, one lam ~ Beta(`mixup_alpha`,
  `mixup_alpha`) per step, the loss of a mixed example lam * CE(a) + (1 - lam) * CE(b)).
The codebook is a buffer (float32 centroids [M, 2^bits, C / M]), so a saved or resumed model
decodes and encodes (nearest centroid, in torch) without any faiss state. Codes are held one
integer per sub-quantiser and position (uint8 up to 8 bits) but counted at the packed size faiss
gives them, ceil(M * bits / 8) bytes per position. The quantiser's math is in `quantizer.py`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.data.datamodule import Fields
from pipeline.models.continual.strategies import stored_bytes
from pipeline.models.continual.strategies.latent import LatentReplay, room
from pipeline.models.continual.strategies.quantizer import (
    centroid_vectors,
    latent_vectors,
    latents_from_vectors,
    nearest_codes,
    packed_code_bytes,
    train_centroids,
)

if TYPE_CHECKING:
    from pipeline.models.continual.module import Continual


class REMIND(LatentReplay):
    """REMIND: product-quantised latents of a frozen lower network, replayed through the upper one;
    see the module's docstring. Keeps `centroids` [M, 2^bits, C / M] (float32), `codes`
    [N, H * W, M] (one integer per sub-quantiser and position) and `latent_shape` (C, H, W) or
    (D,)."""

    def __init__(self, spec, net: Continual):
        super().__init__(spec, net)
        net.set_lower_frozen(True)
        code_dtype = torch.uint8 if spec.bits <= 8 else torch.int16 if spec.bits <= 15 else torch.int32
        self.register_buffer("centroids", torch.zeros(0))
        self.register_buffer("codes", torch.zeros(0, dtype=code_dtype))
        self.register_buffer("latent_shape", torch.zeros(0, dtype=torch.int64))

    def restore_frozen(self) -> None:
        self.net.set_lower_frozen(True)

    @property
    def quantizer_ready(self) -> bool:
        return self.centroids.numel() > 0

    # --- the quantiser ---

    def code_bytes(self) -> int:
        """Bytes of one position's code, packed as faiss packs it: ceil(M * bits / 8)."""
        return packed_code_bytes(self.spec.subquantizers, self.spec.bits)

    def positions(self) -> int:
        """Positions a latent has: H * W of a map [C, H, W], L of a sequence's [C, L], 1 of a vector."""
        return int(np.prod(self.latent_shape.tolist()[1:], dtype=np.int64))

    def sample_bytes(self) -> int:
        """Bytes one example takes in the buffer: its codes at every position, and its label."""
        return self.positions() * self.code_bytes() + self.label_bytes()

    def codebook_bytes(self) -> int:
        """The centroids, float32: 2^bits per sub-quantiser of C / M dimensions, 2^bits * C * 4."""
        return stored_bytes(self.centroids)

    def capacity(self) -> int:
        memory = self.spec.memory
        if memory.samples is not None:
            return memory.samples
        return room(memory.bytes - self.codebook_bytes(), self.sample_bytes(), memory.bytes, "remind")

    as_vectors = staticmethod(latent_vectors)

    def from_vectors(self, vectors: torch.Tensor) -> torch.Tensor:
        """Inverse of `as_vectors` for this strategy's latent shape."""
        return latents_from_vectors(vectors, self.latent_shape.tolist())

    def fit_quantizer(self, index: int = 0) -> None:
        """Fits the product quantiser (faiss k-means) on `quantizer_samples` random examples of
        experience `index` (the first one) and keeps its centroids."""
        spec = self.spec
        inputs = self.experiences[index].train["input"]
        chosen = torch.randperm(len(inputs))[: spec.quantizer_samples].sort().values
        latents = self.latents(inputs[chosen]).float()
        self.latent_shape = torch.tensor(latents.shape[1:], dtype=torch.int64, device=self.device)
        vectors = self.as_vectors(latents)
        channels = vectors.shape[-1]
        if channels % spec.subquantizers:
            raise ValueError(f"remind: {spec.subquantizers} subquantizers do not divide the latents' {channels} "
                             f"channels")
        points = vectors.reshape(-1, channels).cpu().numpy().astype(np.float32)
        if len(points) < 2**spec.bits:
            raise ValueError(f"remind: {len(points)} latent vectors cannot fit {2**spec.bits} centroids per "
                             f"sub-quantiser: raise quantizer_samples or lower bits")
        centroids = train_centroids(points, spec.subquantizers, spec.bits)
        self.centroids = torch.from_numpy(centroids).to(self.device)

    def encode(self, latents: torch.Tensor) -> torch.Tensor:
        """Codes [N, H * W, M] of latents: each sub-vector's nearest centroid."""
        vectors = self.as_vectors(latents.float().to(self.centroids.device))
        return nearest_codes(vectors, self.centroids).to(self.codes.dtype)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Latents [N, C, H, W] (or [N, D]) from codes [N, H * W, M]: the centroids they index."""
        return self.from_vectors(centroid_vectors(codes, self.centroids))

    def reconstruct(self, latents: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(latents)).to(latents.dtype)

    # --- LatentReplay ---

    def _stored(self) -> torch.Tensor:
        return self.codes

    def _set_stored(self, rows: torch.Tensor) -> None:
        self.codes = rows

    def _replayed(self, rows: torch.Tensor) -> torch.Tensor:
        return self.decode(self.codes[rows])

    def _seen(self, latents: torch.Tensor) -> torch.Tensor:
        return self.reconstruct(latents) if self.quantizer_ready else latents

    # --- REMIND's augmentations ---

    def crop(self, maps: torch.Tensor) -> torch.Tensor:
        """Each map [N, C, H, W] a random region of `crop_scale` of its area (aspect ratio 3/4 to
        4/3, in whole cells) resized back to H x W (bilinear); anything else as it is."""
        if self.spec.crop_scale is None or maps.dim() != 4:
            return maps
        count, _, height, width = maps.shape
        low, high = self.spec.crop_scale
        area = torch.empty(count, device=maps.device).uniform_(low, high) * height * width
        aspect = torch.exp(torch.empty(count, device=maps.device).uniform_(math.log(3 / 4), math.log(4 / 3)))
        w = torch.sqrt(area * aspect).round().clamp(1, width)
        h = torch.sqrt(area / aspect).round().clamp(1, height)
        left = torch.floor(torch.rand(count, device=maps.device) * (width - w + 1))
        top = torch.floor(torch.rand(count, device=maps.device) * (height - h + 1))
        # The crop's edges in the [-1, 1] coordinates of affine_grid (align_corners=False: the outer
        # edges of the edge cells), in float32 whatever the maps' precision.
        theta = torch.zeros(count, 2, 3, device=maps.device)
        theta[:, 0, 0], theta[:, 1, 1] = w / width, h / height
        theta[:, 0, 2] = (2 * left + w) / width - 1
        theta[:, 1, 2] = (2 * top + h) / height - 1
        grid = F.affine_grid(theta, list(maps.shape), align_corners=False).to(maps.dtype)
        return F.grid_sample(maps, grid, mode="bilinear", padding_mode="border", align_corners=False)

    def augment(self, latents: torch.Tensor) -> torch.Tensor:
        return self.crop(latents)

    def replay_loss(self, batch: Fields) -> torch.Tensor:
        """With mixup: the step's replayed latents drawn twice over and mixed in pairs, each mixed
        example's loss lam * CE(a) + (1 - lam) * CE(b); the current batch's as they are."""
        if not (self.spec.mixup_alpha and len(self.labels)):
            return super().replay_loss(batch)
        fresh = len(batch["label"])
        latents, labels, task = self.replay_step(batch, draws=2)
        half = (len(labels) - fresh) // 2
        new, first, second = latents.split([fresh, half, half])
        alpha = torch.tensor(float(self.spec.mixup_alpha))
        lam = float(torch.distributions.Beta(alpha, alpha).sample())
        inputs = torch.cat([new, lam * first + (1 - lam) * second])
        logits = self.net.logits_from_latents(inputs, task[: len(inputs)] if task is not None else None)
        a = F.cross_entropy(logits, labels[: len(inputs)], reduction="none")
        b = F.cross_entropy(logits[fresh:], labels[len(inputs):], reduction="none")
        a[fresh:] = lam * a[fresh:] + (1 - lam) * b
        return a.mean()

    # --- the protocol ---

    def train_fields(self, index: int) -> Fields:
        if not self.quantizer_ready:
            self.fit_quantizer(0)
        return super().train_fields(index)

    def loss(self, batch: Fields) -> torch.Tensor:
        if not self.quantizer_ready:
            self.fit_quantizer(0)
        return self.replay_loss(batch)

    def scores(self, inputs: torch.Tensor, task: torch.Tensor | None) -> torch.Tensor:
        if not self.quantizer_ready:  # before the first phase (the untrained network's accuracy)
            return super().scores(inputs, task)
        return self.net.logits_from_latents(self.reconstruct(self.net.lower(inputs)), task)

    def end_experience(self, index: int) -> None:
        if not self.quantizer_ready:
            self.fit_quantizer(0)
        fields = self.experiences[index].train
        if len(fields["label"]):
            kept, taken = self.refill(fields["label"], self.capacity())
            codes = self.encode(self.latents(fields["input"][taken])) if len(taken) else None
            self.store(kept, codes, fields["label"][taken])
        self.done.fill_(index + 1)

    def memory(self) -> dict[str, float]:
        if not self.quantizer_ready:
            return super().memory()
        samples = len(self.labels)
        return {"memory_samples": samples, "memory_bytes": samples * self.sample_bytes() + self.codebook_bytes()}
