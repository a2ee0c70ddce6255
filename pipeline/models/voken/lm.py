"""The vokenized language model (Tan & Bansal 2020): a small BERT trained with masked language
modelling and, on a vokenized corpus, voken classification of every real token.

Batches: `input` int64 [B, L] token ids ([CLS] ... [SEP], then PAD), `vokens` int64 [B, L] (the
voken of each token, IGNORE at padding and special tokens; read unless `vokens: none`)."""

from __future__ import annotations

import torch
from torch import nn

from pipeline.data.datamodule import model_input
from pipeline.data.text import IGNORE, VOCAB_SIZE
from pipeline.models.base import Phase, Trainable
from pipeline.models.voken import VokenLMSpec
from pipeline.models.voken.losses import (
    ignoring_cross_entropy,
    mask_tokens,
    random_voken_map,
    randomised_vokens,
    voken_loss,
)
from pipeline.models.voken.text import TextTransformer, bert_init
from pipeline.spec.components import TrainSpec

VALIDATION_SEED = 7_919
"""Validation batch k is masked by a generator seeded VALIDATION_SEED + k: the same tokens, and
the same replacements, every epoch, so the accuracies are comparable from epoch to epoch."""


class Transform(nn.Sequential):
    """BERT's head transform: dense, GELU, LayerNorm."""

    def __init__(self, dim: int):
        super().__init__(nn.Linear(dim, dim), nn.GELU(), nn.LayerNorm(dim))


class VokenLM(Trainable):
    """kind: voken_lm. `encoder` (what downstream tasks read): token ids [B, L] -> sentence
    features [B, dim], the mean of the last layer over the non-PAD tokens. Heads: MLM (transform,
    then a decoder whose weight is the token embedding matrix, plus a bias of its own) and, unless
    `vokens: none`, the voken classifier (transform, linear over the num_classes vokens)."""

    validation_metric = "val/mlm_accuracy"

    def __init__(self, spec: VokenLMSpec, train: TrainSpec, input_shape: tuple[int, ...], num_classes: int):
        if spec.vokens != "none" and num_classes <= 0:
            raise ValueError(f"vokens: {spec.vokens} needs a dataset whose classes are the voken pool (got "
                             f"{num_classes} classes); use vokens: none on plain text")
        length = input_shape[-1] if input_shape else 0
        encoder = TextTransformer(spec.dim, spec.layers, spec.heads, spec.ffn, spec.dropout,
                                  max(spec.max_length, length))
        super().__init__(encoder, train)
        self.spec = spec
        self.num_vokens = num_classes
        self.mlm_transform = Transform(spec.dim)
        self.mlm_decoder = nn.Linear(spec.dim, VOCAB_SIZE)
        # Built on a fork of the random state: the variants of one seed then draw the same
        # initial weights elsewhere, the same masks and the same dropout, whether or not they
        # have a voken head.
        with torch.random.fork_rng():
            torch.manual_seed(torch.initial_seed() + 1)
            self.voken_head = (nn.Sequential(Transform(spec.dim), nn.Linear(spec.dim, num_classes))
                               if spec.vokens != "none" else None)
            if self.voken_head is not None:
                bert_init(self.voken_head)
        bert_init(self.mlm_transform)
        nn.init.zeros_(self.mlm_decoder.bias)
        self.mlm_decoder.weight = self.encoder.tokens.weight  # tied: the decoder reads the token embeddings
        self.register_buffer("random_vokens", torch.tensor([[0, IGNORE]] * VOCAB_SIZE, dtype=torch.long))
        """vokens: random: each token type's permutation of the pool, rows (a_t, b_t) (see
        `losses.random_voken_map`); built by `phases`, saved with the weights. (0, IGNORE) otherwise."""
        self._random_checked = False

    # --- the protocol ---

    def phases(self, spec, splits) -> list[Phase]:
        phases = super().phases(spec, splits)
        if self.spec.vokens == "random":
            self.random_vokens.copy_(random_voken_map(splits.train["vokens"], spec.seed, self.num_vokens))
        return phases

    # --- the network ---

    def hidden(self, ids: torch.Tensor) -> torch.Tensor:
        """The last layer's states [B, L, dim] of token ids [B, L]."""
        return self.encoder.hidden(ids)

    def mlm_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits over the vocabulary [..., VOCAB_SIZE] of hidden states [..., dim]."""
        return self.mlm_decoder(self.mlm_transform(hidden))

    def voken_targets(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """The voken each token is trained to predict [B, L] (IGNORE where none), or None for
        vokens: none. random: each matched voken through its token type's permutation of the pool."""
        if self.voken_head is None:
            return None
        vokens = batch["vokens"]
        if self.spec.vokens == "random":
            if not self._random_checked:
                if bool((self.random_vokens[:, 0] == 0).all()):
                    raise RuntimeError("vokens: random, but the map of random vokens is empty: build it with "
                                       "phases(spec, splits) (the training stage does) or load trained weights")
                self._random_checked = True
            vokens = randomised_vokens(batch["input"], vokens, self.random_vokens, self.num_vokens)
        return vokens

    def step(self, batch: dict[str, torch.Tensor], generator: torch.Generator | None = None
             ) -> dict[str, torch.Tensor]:
        """Masks the batch, runs the network once on the masked ids and returns the losses and
        the counts behind the accuracies: loss, mlm_loss, mlm_correct, mlm_count and, with
        vokens, voken_loss, voken_correct, voken_count."""
        ids = model_input(batch["input"])
        inputs, labels = mask_tokens(ids, generator, self.spec.mask_prob)
        hidden = self.encoder.hidden(inputs)
        masked = labels != IGNORE
        logits = self.mlm_logits(hidden[masked])
        targets = labels[masked]
        out = {"mlm_loss": ignoring_cross_entropy(logits, targets),
               "mlm_correct": (logits.argmax(dim=-1) == targets).sum(), "mlm_count": masked.sum()}
        out["loss"] = out["mlm_loss"]
        vokens = self.voken_targets(batch)
        if vokens is not None:
            real = vokens != IGNORE
            voken_logits = self.voken_head(hidden[real])
            out["voken_loss"] = voken_loss(voken_logits, vokens[real])
            out["voken_correct"] = (voken_logits.argmax(dim=-1) == vokens[real]).sum()
            out["voken_count"] = real.sum()
            out["loss"] = out["loss"] + self.spec.voken_weight * out["voken_loss"]
        return out

    # --- Lightning ---

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        out = self.step(batch)
        size = len(batch["input"])
        self.log("train/loss", out["loss"], on_step=True, on_epoch=True, prog_bar=True, batch_size=size,
                 sync_dist=True)
        self.log("train/mlm_loss", out["mlm_loss"], on_step=False, on_epoch=True, batch_size=size, sync_dist=True)
        if "voken_loss" in out:
            self.log("train/voken_loss", out["voken_loss"], on_step=False, on_epoch=True, batch_size=size,
                     sync_dist=True)
        return out["loss"]

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        out = self.step(batch, torch.Generator().manual_seed(VALIDATION_SEED + batch_idx))
        # Weighted by their counts, the epoch means are the accuracies over every counted token.
        for name in ("mlm", "voken"):
            if f"{name}_count" not in out:
                continue
            count = int(out[f"{name}_count"])
            if count:
                accuracy = out[f"{name}_correct"].float() / count
                self.log(f"val/{name}_accuracy", accuracy, on_epoch=True, prog_bar=name == "mlm",
                         batch_size=count, sync_dist=True)

    def plot_groups(self) -> dict[str, tuple[str, list[str]]]:
        losses = ["train/loss_epoch", "train/mlm_loss"]
        accuracies = ["val/mlm_accuracy"]
        if self.voken_head is not None:
            losses.append("train/voken_loss")
            accuracies.append("val/voken_accuracy")
        return {"training_curves": ("training losses (MLM + voken_weight x voken)", losses),
                "validation_accuracy": ("validation accuracy (masked tokens; vokens of real tokens)", accuracies)}
