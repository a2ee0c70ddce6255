"""The token-image matcher of vokenization (Tan & Bansal 2020): a contextual caption encoder and an
image encoder meet in a joint space, where the relevance of a caption's token to an image is the
dot product of their unit vectors. Trained with the token-image hinge ranking loss over the
batch's other images and captions (see `losses.token_image_hinge`).

Batches (fmnist_scenes): `input` uint8 [B, 1, 56, 56] scenes, `tokens` int64 [B, L] captions
([CLS] ... [SEP], then PAD); `word_class` [B, L] and `items` [B, K], where present, keep a scene
that shows the class a token names from serving as that token's negative."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.data.datamodule import model_input
from pipeline.data.text import CLS, MASK, PAD, SEP
from pipeline.models.backbones import ConvNet
from pipeline.models.base import Trainable
from pipeline.models.voken import VokenMatcherSpec
from pipeline.models.voken.losses import caption_scores, token_image_hinge, true_negatives
from pipeline.models.voken.text import TextTransformer
from pipeline.spec.components import TrainSpec


def real_tokens(tokens: torch.Tensor) -> torch.Tensor:
    """The tokens that name something [B, L] (bool): not [PAD], [CLS], [SEP] (nor [MASK], which a
    caption never holds). [UNK] counts: it stands for a word."""
    special = torch.tensor([PAD, CLS, SEP, MASK], device=tokens.device)
    return ~torch.isin(tokens, special)


class VokenMatcher(Trainable):
    """kind: voken_matcher. `encoder` is the image encoder (an `out_dim` feature vector per image,
    what downstream tasks read): a small CNN trained here, or the `encoder` keyword (an upstream
    spec's trained encoder, fine-tuned or frozen per `upstream_projection`). Both sides are
    linearly projected into the joint space and L2-normalised."""

    validation_metric = "val/r1"

    def __init__(self, spec: VokenMatcherSpec, train: TrainSpec, input_shape: tuple[int, ...], num_classes: int,
                 encoder: nn.Module | None = None):
        upstream = encoder is not None
        if encoder is None:
            encoder = ConvNet(input_shape[0], spec.image_widths, 1, spec.image_grid)
        super().__init__(encoder, train)
        self.spec = spec
        self.upstream = upstream
        self.frozen = upstream and spec.upstream_projection == "frozen"
        if self.frozen:
            self.encoder.requires_grad_(False)
            self.encoder.eval()
        self.image_projection = nn.Linear(self.encoder.out_dim, spec.joint_dim)
        self.text = TextTransformer(spec.dim, spec.layers, spec.heads, spec.ffn, spec.dropout, spec.max_length)
        self.text_projection = nn.Linear(spec.dim, spec.joint_dim)

    def train(self, mode: bool = True):
        super().train(mode)
        if getattr(self, "frozen", False):
            self.encoder.eval()  # a frozen upstream encoder keeps its BatchNorm statistics
        return self

    # --- the two sides ---

    @staticmethod
    def real_tokens(tokens: torch.Tensor) -> torch.Tensor:
        return real_tokens(tokens)

    def token_embeddings(self, tokens: torch.Tensor) -> torch.Tensor:
        """Unit vectors [B, L, joint_dim] of each token of captions [B, L] in context (padding and
        special positions too: mask them with `real_tokens`)."""
        return F.normalize(self.text_projection(self.text.hidden(tokens)), dim=-1)

    def image_embeddings(self, images: torch.Tensor) -> torch.Tensor:
        """Unit vectors [B, joint_dim] of images [B, C, H, W] (floats in [0, 1])."""
        if self.upstream and self.spec.upstream_side is not None:
            images = F.adaptive_avg_pool2d(images, self.spec.upstream_side)
        return F.normalize(self.image_projection(self.encoder(images)), dim=-1)

    def token_image_scores(self, tokens: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """Relevance [Nc, L, Ni] of each token of each caption to each image."""
        return torch.einsum("bld,cd->blc", self.token_embeddings(tokens), self.image_embeddings(images))

    def caption_image_scores(self, tokens: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """Caption-to-image retrieval scores [Nc, Ni]: the mean relevance of the caption's real tokens."""
        return caption_scores(self.token_image_scores(tokens, images), real_tokens(tokens))

    def loss(self, tokens: torch.Tensor, images: torch.Tensor, negatives: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """(hinge loss, token-image relevances [B, L, B]) of a batch of matching captions and images;
        `negatives` [B, L, B]: which other items count as each token's negatives (default: all)."""
        scores = self.token_image_scores(tokens, images)
        return token_image_hinge(scores, real_tokens(tokens), self.spec.margin, negatives), scores

    @staticmethod
    def negatives(batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """The batch's true negatives per token (see `losses.true_negatives`), where it says which
        classes its captions name and its scenes hold; None (every other item) otherwise."""
        if "word_class" not in batch or "items" not in batch:
            return None
        return true_negatives(batch["tokens"], batch["word_class"], batch["items"])

    # --- Lightning ---

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        tokens = batch["tokens"]
        loss, _ = self.loss(tokens, model_input(batch["input"]), self.negatives(batch))
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(tokens),
                 sync_dist=True)
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        """val/r1: the share of captions whose own image scores highest among the validation
        batch's images (a batch of B holds B candidates; averaged over batches weighted by size)."""
        tokens = batch["tokens"]
        loss, scores = self.loss(tokens, model_input(batch["input"]), self.negatives(batch))
        retrieval = caption_scores(scores, real_tokens(tokens))
        hits = (retrieval.argmax(dim=1) == torch.arange(len(tokens), device=tokens.device)).float().mean()
        self.log("val/loss", loss, on_epoch=True, batch_size=len(tokens), sync_dist=True)
        self.log("val/r1", hits, on_epoch=True, prog_bar=True, batch_size=len(tokens), sync_dist=True)

    def plot_groups(self) -> dict[str, tuple[str, list[str]]]:
        return {"training_curves": ("hinge loss", ["train/loss_epoch", "val/loss"]),
                "retrieval": ("caption-to-image recall@1 among a validation batch", ["val/r1"])}
