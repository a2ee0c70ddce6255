"""Latent replay: the lower network (the modules below `latent_layer`) is frozen, and what a buffer
keeps and replays are its activations at the cut, not raw inputs; every replayed example then
costs one pass through the upper network only, and (compressed) activations can be far smaller
than the images they come from.

AR1* with latent replay (Lomonaco & Maltoni 2017; Pellegrini et al. 2020):
- experience 0 trains the whole network; from `end_experience(0)` on the lower network is frozen
  (so the latents stored then stay valid for good);
- after each experience, a class-balanced buffer of latents (float32, as the lower network gives
  them, computed in eval mode) takes in random examples of that experience: the room is shared
  equally by the classes seen so far, and an older class's share shrinks by dropping random ones;
- every step of a later experience trains the upper network on the current batch's latents and
  a random draw of `batch_size` latents from the buffer, concatenated;
- CWR* head (`cwr_star`; Lomonaco et al. 2020): the head has no bias (zeroed, not trained) and
  keeps consolidated weights `cw` [C, D] and counts `past` [C] (examples each class was trained
  on). A phase trains the rows of the classes it sees (the experience's and, as in AR1* with
  latent replay, the replayed ones), starting from `cw`, the other rows at zero; when it ends,
  with tw the trained rows and cur_j the examples of class j in the phase (the buffer's count for
  a replayed class):
      w_j   = sqrt(past_j / cur_j)
      cw[j] = (cw[j] * w_j + tw[j] - mean(tw)) / (w_j + 1),   past_j += cur_j
  where mean(tw) is the mean of every entry of the trained rows (a scalar, as the original CWR*
  and Avalanche compute it: a per-dimension mean over the phase's classes would zero a phase of
  one class); then the head is set to `cw` for every class, which is what gets measured.

REMIND (Hayes et al. 2020):
- the lower network (an upstream encoder's first stages) is frozen from the start;
- its activations are feature maps [C, H, W] (or vectors [D], taken as C = D, H = W = 1); the
  C-vector at each position is product-quantised: `subquantizers` (M) sub-vectors of C / M
  dimensions, each replaced by the index of its nearest of 2^`bits` centroids. The quantiser is
  fitted (faiss k-means) when the first phase starts, on `quantizer_samples` random examples of
  experience 0, and from then on every latent the upper network reads, the current batch's and
  the test examples' included, is quantised and reconstructed, as REMIND does, so that training
  and test inputs and replayed ones all come from the same space;
- after each experience, its examples' codes join a class-balanced buffer (as above) with all of
  the experience the budget allows; each step decodes a random draw of `batch_size` of them and
  trains the upper network on them beside the current batch;
- REMIND's augmentations, as its authors' code applies them, where a spec asks for them (off by
  default): every map a step trains on (the current batch's and the replayed ones) is a random
  resized crop of itself (`crop_scale` of its area, resized back bilinearly), and the replayed
  part is drawn twice over and mixed in pairs (mixup, one lam ~ Beta(`mixup_alpha`,
  `mixup_alpha`) per step, the loss of a mixed example lam * CE(a) + (1 - lam) * CE(b)).
The codebook is a buffer (float32 centroids [M, 2^bits, C / M]), so a saved or resumed model
decodes and encodes (nearest centroid, in torch) without any faiss state. Codes are held one
integer per sub-quantiser and position (uint8 up to 8 bits) but counted at the packed size faiss
gives them, ceil(M * bits / 8) bytes per position.

Both buffers hold the labels as uint8 (one byte each, as counted; int16 past 256 classes). In a
domain-incremental stream a class comes back in every experience: its room is then shared
between the examples already kept and the new ones in proportion to the experiences each stand
for, so every (class, experience) keeps about the same share.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.data.datamodule import Fields
from pipeline.models.continual.strategies import Strategy, small_int, stored_bytes

if TYPE_CHECKING:
    from pipeline.models.continual.module import Continual

CHUNK = 1024  # examples per pass when a whole experience goes through the lower network


def balanced_quotas(available: dict[int, int], capacity: int) -> dict[int, int]:
    """How many examples each class keeps when `capacity` is shared as equally as possible among
    the classes, none keeping more than it has (`available`): a class with fewer examples than
    its share keeps them all and leaves the rest to the others; the remainder of an uneven split
    goes to the classes with the fewest examples (ties: in class order)."""
    quotas = {c: 0 for c in available}
    remaining = max(0, capacity)
    open_classes = sorted(available, key=lambda c: (available[c], c))
    while open_classes and remaining > 0:
        share = remaining // len(open_classes)
        smallest = open_classes[0]
        if available[smallest] <= share:
            quotas[smallest] = available[smallest]
            remaining -= available[smallest]
            open_classes.pop(0)
            continue
        extra = remaining - share * len(open_classes)
        for rank, c in enumerate(open_classes):
            quotas[c] = share + (rank < extra)
        break
    return quotas


def _pick(positions: torch.Tensor, count: int) -> torch.Tensor:
    """`count` of `positions` at random, in their order."""
    if count >= len(positions):
        return positions
    return positions[torch.randperm(len(positions))[:count]].sort().values


def _room(free: int, per_sample: int, budget: int, name: str) -> int:
    """Samples a byte budget holds; a budget that holds none is an error, not a silent no-op."""
    if free < per_sample:
        raise ValueError(f"{name}: memory.bytes {budget:,} holds no sample ({per_sample:,} bytes each, after "
                         f"{budget - free:,} bytes of fixed state): raise memory.bytes")
    return free // per_sample


class LatentReplay(Strategy):
    """What AR1 and REMIND share: a class-balanced buffer of one stored form of latents per
    example (`labels` beside it), filled at the end of each experience, and steps that train the
    upper network on the current batch's latents with a random draw from the buffer.

    Subclasses keep the stored form (`_stored`, `_set_stored`: a buffer whose first axis is the
    example) and say how a stored row becomes the upper network's input (`_replayed`) and how a
    fresh latent is given to it (`_seen`, as it is by default)."""

    def __init__(self, spec, net: Continual):
        super().__init__(spec, net)
        self.register_buffer("labels", torch.zeros(0, dtype=small_int(net.num_classes)))
        # Experiences each class has appeared in (a class comes back in a domain-incremental stream).
        self.register_buffer("appearances", torch.zeros(net.num_classes, dtype=torch.int64))
        self.register_buffer("done", torch.zeros((), dtype=torch.int64))  # experiences ended

    # --- what the subclasses define ---

    def _stored(self) -> torch.Tensor:
        raise NotImplementedError

    def _set_stored(self, rows: torch.Tensor) -> None:
        raise NotImplementedError

    def _replayed(self, rows: torch.Tensor) -> torch.Tensor:
        """The upper network's input for the stored rows `rows` (indices into the buffer)."""
        raise NotImplementedError

    def _seen(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents of fresh inputs as the upper network is given them."""
        return latents

    # --- the lower network ---

    @property
    def device(self) -> torch.device:
        return self.net.head.weight.device

    @torch.no_grad()
    def latents(self, inputs: torch.Tensor) -> torch.Tensor:
        """The lower network's activations for `inputs` (any number: in chunks), in eval mode,
        without gradients, on the network's device."""
        was_training = self.net.training
        self.net.eval()
        try:
            return torch.cat([self.net.lower(inputs[start:start + CHUNK].to(self.device)).contiguous()
                              for start in range(0, len(inputs), CHUNK)])
        finally:
            self.net.train(was_training)

    # --- the buffer ---

    def label_bytes(self) -> int:
        return self.labels.element_size()

    def refill(self, new_labels: torch.Tensor, capacity: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The buffer's class-balanced update for an experience of labels `new_labels`, in room for
        `capacity` examples: (the buffer's rows kept, the experience's examples taken in), each
        sorted. Records the experience's classes as seen once more."""
        old = self.labels.long().cpu()
        new = new_labels.long().cpu()
        appearances = self.appearances.cpu()
        appearances[new.unique()] += 1
        self.appearances.copy_(appearances)
        old_counts = torch.bincount(old, minlength=self.net.num_classes)
        new_counts = torch.bincount(new, minlength=self.net.num_classes)
        classes = torch.nonzero(old_counts + new_counts).flatten().tolist()
        quotas = balanced_quotas({c: int(old_counts[c] + new_counts[c]) for c in classes}, capacity)
        kept, taken = [], []
        for c in classes:
            quota, have, fresh = quotas[c], int(old_counts[c]), int(new_counts[c])
            # The new examples stand for one of the class's experiences, those kept for the others.
            share = quota // max(1, int(appearances[c])) if have else quota
            take = min(fresh, max(share, quota - have))
            kept.append(_pick(torch.nonzero(old == c).flatten(), quota - take))
            taken.append(_pick(torch.nonzero(new == c).flatten(), take))
        none = torch.zeros(0, dtype=torch.int64)
        return torch.cat(kept + [none]).sort().values, torch.cat(taken + [none]).sort().values

    def store(self, kept: torch.Tensor, new_rows: torch.Tensor | None, new_labels: torch.Tensor) -> None:
        """The buffer becomes its rows `kept` followed by `new_rows` (stored form; None: none), the
        labels alike."""
        stored = self._stored()
        parts = [stored[kept.to(stored.device)]] if len(stored) else []
        if new_rows is not None:
            parts.append(new_rows.to(stored.device))
        if parts:
            self._set_stored(torch.cat(parts).to(self.device))
        self.labels = torch.cat([self.labels[kept.to(self.labels.device)],
                                 new_labels.to(self.labels.device, self.labels.dtype)]).to(self.device)

    def draw(self, count: int) -> torch.Tensor:
        """`count` random rows of the buffer (all of it, shuffled, if it holds fewer)."""
        return torch.randperm(len(self.labels), device=self.labels.device)[:count]

    # --- training ---

    def replay_step(self, batch: Fields, draws: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """What a step trains the upper network on: the current batch's latents (frozen lower
        network), then `draws` random draws of `batch_size` from the buffer (none while it is
        empty), concatenated and augmented (`augment`); with their labels and experiences (a
        replayed example's: the first its class belongs to, which matters only to a
        task-incremental stream, where each class belongs to one)."""
        latents = self._seen(self.latents_for_step(batch["input"]))
        labels, task = batch["label"], batch.get("task")
        if len(self.labels):
            rows = torch.cat([self.draw(self.spec.batch_size or len(labels)) for _ in range(draws)])
            replayed_labels = self.labels[rows].long().to(labels.device)
            latents = torch.cat([latents, self._replayed(rows).to(latents.device, latents.dtype)])
            labels = torch.cat([labels, replayed_labels])
            if task is not None:
                task = torch.cat([task, self.net.experience_of(replayed_labels).to(task.device)])
        return self.augment(latents), labels, task

    def augment(self, latents: torch.Tensor) -> torch.Tensor:
        """The step's latents as the upper network trains on them (default: as they are)."""
        return latents

    def replay_loss(self, batch: Fields) -> torch.Tensor:
        """Cross-entropy over the step's latents (`replay_step`)."""
        latents, labels, task = self.replay_step(batch)
        return self.net.cross_entropy(self.net.logits_from_latents(latents, task), {"label": labels})

    def latents_for_step(self, inputs: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.net.lower(inputs).contiguous()

    def restore_frozen(self) -> None:
        """After a load: the lower network frozen as the strategy had it."""

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)
        self.restore_frozen()


class AR1(LatentReplay):
    """AR1* with latent replay and (`cwr_star`) a CWR* head: see the module's docstring. Keeps
    the latents in float32 (`stored_latents` [N, *latent shape]), and `cw`, `past` for CWR*."""

    def __init__(self, spec, net: Continual):
        super().__init__(spec, net)
        self.register_buffer("stored_latents", torch.zeros(0))
        head = net.head
        if spec.cwr_star:
            self.register_buffer("cw", torch.zeros_like(head.weight.detach()))
            self.register_buffer("past", torch.zeros(net.num_classes, dtype=torch.int64))
            with torch.no_grad():
                head.weight.zero_()  # experience 0 trains its classes' rows from zero
                head.bias.zero_()
            head.bias.requires_grad_(False)  # CWR*'s head has no bias

    def _stored(self) -> torch.Tensor:
        return self.stored_latents

    def _set_stored(self, rows: torch.Tensor) -> None:
        self.stored_latents = rows

    def _replayed(self, rows: torch.Tensor) -> torch.Tensor:
        return self.stored_latents[rows]

    def restore_frozen(self) -> None:
        if int(self.done) > 0:
            self.net.set_lower_frozen(True)

    # --- the protocol ---

    def loss(self, batch: Fields) -> torch.Tensor:
        if not self.net.lower_frozen:
            return super().loss(batch)  # experience 0: the whole network learns, plain cross-entropy
        return self.replay_loss(batch)

    def end_experience(self, index: int) -> None:
        self.net.set_lower_frozen(True)
        fields = self.experiences[index].train
        if self.spec.cwr_star:
            self.consolidate(fields["label"])
        self.fill(fields)
        self.done.fill_(index + 1)

    def next_experience(self, index: int) -> None:
        if self.spec.cwr_star:
            self.prepare_head(self.experiences[index].train["label"])

    # --- the buffer ---

    def sample_bytes(self, latent: torch.Tensor) -> int:
        """Bytes one example takes in the buffer: its latent (float32) and its label."""
        return latent.numel() * 4 + self.label_bytes()

    def fixed_bytes(self) -> int:
        """Bytes kept whatever the buffer holds: CWR*'s consolidated weights and counts."""
        return stored_bytes(self.cw) + stored_bytes(self.past) if self.spec.cwr_star else 0

    def capacity(self, latent: torch.Tensor) -> int:
        memory = self.spec.memory
        if memory.samples is not None:
            return memory.samples
        return _room(memory.bytes - self.fixed_bytes(), self.sample_bytes(latent), memory.bytes, "ar1")

    def fill(self, fields: Fields) -> None:
        """Experience's examples into the buffer, as latents of the (now frozen) lower network."""
        inputs, labels = fields["input"], fields["label"]
        if not len(labels):
            return
        capacity = self.capacity(self.latents(inputs[:1])[0])
        kept, taken = self.refill(labels, capacity)
        self.store(kept, self.latents(inputs[taken]).float() if len(taken) else None, labels[taken])

    # --- CWR* ---

    def trained_counts(self, labels: torch.Tensor) -> torch.Tensor:
        """Examples of each class a phase trains on: the experience's and the buffer's (replayed)."""
        counts = torch.bincount(labels.long().cpu(), minlength=self.net.num_classes)
        return counts + torch.bincount(self.labels.long().cpu(), minlength=self.net.num_classes)

    @torch.no_grad()
    def prepare_head(self, labels: torch.Tensor) -> None:
        """Before a phase: its classes' rows from the consolidated weights, the others zero."""
        trained = (self.trained_counts(labels) > 0).to(self.cw.device)
        weight = self.net.head.weight
        weight.copy_(torch.where(trained[:, None], self.cw, torch.zeros_like(self.cw)).to(weight.device))
        self.net.head.bias.zero_()

    @torch.no_grad()
    def consolidate(self, labels: torch.Tensor) -> None:
        """After a phase: its classes' trained rows merged into `cw`; the head set to `cw`."""
        counts = self.trained_counts(labels).to(self.cw.device)
        trained = counts > 0
        weight = self.net.head.weight
        tw = weight.detach().to(self.cw.device)[trained]
        past = self.past[trained].double()
        w_past = torch.sqrt(past / counts[trained].double()).to(tw.dtype)[:, None]
        self.cw[trained] = (self.cw[trained] * w_past + (tw - tw.mean())) / (w_past + 1)
        self.past[trained] += counts[trained]
        weight.copy_(self.cw.to(weight.device))
        self.net.head.bias.zero_()

    def memory(self) -> dict[str, float]:
        samples = len(self.labels)
        size = stored_bytes(self.stored_latents) + samples * self.label_bytes() + self.fixed_bytes()
        return {"memory_samples": samples, "memory_bytes": size}


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
        return math.ceil(self.spec.subquantizers * self.spec.bits / 8)

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
        return _room(memory.bytes - self.codebook_bytes(), self.sample_bytes(), memory.bytes, "remind")

    @staticmethod
    def as_vectors(latents: torch.Tensor) -> torch.Tensor:
        """Latents [N, C, *positions] (a map [N, C, H, W], a sequence's [N, C, L], or a vector [N, D]) as
        the position vectors the quantiser reads: [N, positions, C]."""
        if latents.dim() == 2:
            return latents[:, None, :]
        return latents.flatten(2).transpose(1, 2)

    def from_vectors(self, vectors: torch.Tensor) -> torch.Tensor:
        """Inverse of `as_vectors` for this strategy's latent shape."""
        shape = self.latent_shape.tolist()
        if len(shape) == 1:
            return vectors[:, 0, :]
        return vectors.transpose(1, 2).reshape(len(vectors), *shape)

    def fit_quantizer(self, index: int = 0) -> None:
        """Fits the product quantiser (faiss k-means) on `quantizer_samples` random examples of
        experience `index` (the first one) and keeps its centroids."""
        # faiss's loader logs each CPU-specific build it does not find before taking the generic one.
        logging.getLogger("faiss.loader").setLevel(logging.WARNING)
        import faiss

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
        quantizer = faiss.ProductQuantizer(channels, spec.subquantizers, spec.bits)
        quantizer.train(points)
        centroids = faiss.vector_to_array(quantizer.centroids).reshape(spec.subquantizers, 2**spec.bits, -1)
        self.centroids = torch.from_numpy(centroids.copy()).to(self.device)

    def encode(self, latents: torch.Tensor) -> torch.Tensor:
        """Codes [N, H * W, M] of latents: each sub-vector's nearest centroid."""
        vectors = self.as_vectors(latents.float().to(self.centroids.device))
        count, positions, channels = vectors.shape
        m, k, sub = self.centroids.shape
        flat = vectors.reshape(-1, m, sub).transpose(0, 1)  # [M, P, C / M]
        step = max(1, (1 << 24) // (m * k))
        codes = torch.cat([torch.cdist(flat[:, start:start + step], self.centroids).argmin(dim=2)
                           for start in range(0, flat.shape[1], step)], dim=1)  # [M, P]
        return codes.t().reshape(count, positions, m).to(self.codes.dtype)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Latents [N, C, H, W] (or [N, D]) from codes [N, H * W, M]: the centroids they index."""
        m, _, sub = self.centroids.shape
        codes = codes.long().to(self.centroids.device)
        parts = self.centroids[torch.arange(m, device=codes.device), codes]  # [N, H * W, M, C / M]
        return self.from_vectors(parts.reshape(len(codes), codes.shape[1], m * sub))

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
