"""Vokenization (Tan & Bansal 2020): the specs of the chain's two model families. Pure pydantic;
the LightningModules are in `matcher.py` and `lm.py`, the losses in `losses.py`, the shared text
transformer in `text.py` (imported only to train).

- `voken_matcher`: a token-image matcher. A contextual text encoder (a small transformer over the
  caption's token ids) and an image encoder (a small CNN, or an upstream spec's encoder), both
  projected into one joint space and L2-normalised: the relevance of a caption's token to an image
  is their dot product. Trained with the token-image hinge ranking loss over in-batch negatives.
  Its best-scoring image for each token of a corpus is that token's voken.
- `voken_lm`: a small BERT-style language model trained with masked language modelling and, on a
  vokenized corpus, voken classification of every token (`vokens: matched`), or the same
  supervision with each token type's voken drawn at random (`vokens: random`, the control that
  tells grounding from extra supervision), or MLM alone (`vokens: none`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from pipeline.spec.components import Strict


def _check_heads(dim: int, heads: int) -> None:
    if dim % heads:
        raise ValueError(f"dim ({dim}) must be a multiple of heads ({heads})")


class VokenMatcherSpec(Strict):
    """The token-image matcher. Captions and images meet in a `joint_dim` space; a token's
    relevance to an image is the dot product of their unit vectors."""

    kind: Literal["voken_matcher"]
    dim: int = Field(128, gt=0, description="Width of the caption transformer (token and position embeddings).")
    layers: int = Field(2, ge=1, le=4, description="Transformer encoder layers of the caption encoder.")
    heads: int = Field(4, gt=0, description="Attention heads per layer (dim must be a multiple of it).")
    ffn: int = Field(256, gt=0, description="Hidden width of each transformer layer's feed-forward block.")
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout of the caption transformer (embeddings, "
                                                         "attention, feed-forward).")
    max_length: int = Field(64, gt=0, description="Positions of the learned position embeddings: the longest "
                                                  "caption the matcher reads (fmnist_scenes captions are 24).")
    joint_dim: int = Field(64, gt=0, description="Size of the joint token-image space (both sides are linearly "
                                                 "projected into it and L2-normalised).")
    margin: float = Field(0.5, gt=0, description="Margin of the hinge ranking loss: a positive pair must beat a "
                                                 "negative by this much (relevances are cosines in [-1, 1]).")
    image_widths: list[int] = Field(
        [32, 64, 128], min_length=1,
        description="Channels of the image CNN's stages (3x3 conv, BatchNorm, ReLU; each stage but the last "
                    "halves the resolution). Unused when an upstream encoder is given.")
    image_grid: int = Field(
        2, gt=0, description="The image CNN's last map is average-pooled to grid x grid and flattened (2 keeps "
                             "the quadrants of a 2x2 scene apart). Unused with an upstream encoder.")
    upstream_projection: Literal["finetune", "frozen"] = Field(
        "finetune",
        description="With an upstream encoder (`upstream.encoder`): a linear projection of its out_dim features "
                    "into the joint space; finetune: the encoder trains with it; frozen: its weights (and "
                    "BatchNorm statistics) stay as they came, only the projection learns.")
    upstream_side: int | None = Field(
        None, gt=0,
        description="With an upstream encoder: average-pool each scene to side x side pixels before it (e.g. 28 "
                    "for an encoder trained on 28x28 images); null: the 56x56 scene as it is. Spec loading checks "
                    "that the encoder was trained on images of the shape it is fed.")

    def upstream_encoder_input(self, modality: str, shape: tuple[int, ...]) -> tuple[str, tuple[int, ...]]:
        """What an upstream encoder is fed from this spec's data (modality, shape): the scenes'
        images, average-pooled to `upstream_side` where it is set. Spec loading checks it against
        what that encoder was trained on."""
        channels = shape[0] if shape else 1
        side = self.upstream_side
        return "image", (channels, side, side) if side is not None else tuple(shape)

    @model_validator(mode="after")
    def _check(self) -> VokenMatcherSpec:
        _check_heads(self.dim, self.heads)
        if any(w <= 0 for w in self.image_widths):
            raise ValueError(f"image_widths must all be > 0 (got {self.image_widths})")
        return self


class VokenLMSpec(Strict):
    """The BERT-style language model. Loss = MLM cross-entropy on the masked tokens +
    voken_weight * voken cross-entropy over every real token (unless `vokens: none`)."""

    kind: Literal["voken_lm"]
    dim: int = Field(128, gt=0, description="Hidden size (token and position embeddings, every layer).")
    layers: int = Field(2, ge=2, le=4, description="Transformer encoder layers.")
    heads: int = Field(4, gt=0, description="Attention heads per layer (dim must be a multiple of it).")
    ffn: int = Field(512, gt=0, description="Hidden width of each layer's feed-forward block (GELU).")
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout on the embeddings, attention and feed-forward.")
    max_length: int = Field(
        64, gt=0, description="Positions of the learned position embeddings (at least the dataset's sequence "
                              "length is always allowed): the longest sequence the encoder reads downstream.")
    mask_prob: float = Field(
        0.15, gt=0, lt=1, description="Fraction of real tokens chosen for MLM (of them 80% become [MASK], 10% a "
                                      "random token, 10% stay); special tokens and padding never.")
    vokens: Literal["none", "matched", "random"] = Field(
        "matched",
        description="none: MLM alone (no voken head, no voken loss); matched: predict the data's vokens; random: "
                    "the control: each token type gets one fixed voken drawn (seeded by the run's seed) from the "
                    "empirical distribution of the training split's matched vokens: supervision of the same form "
                    "and marginal, with no link to images.")
    voken_weight: float = Field(1.0, ge=0, description="Weight of the voken cross-entropy in the loss.")

    @model_validator(mode="after")
    def _check(self) -> VokenLMSpec:
        _check_heads(self.dim, self.heads)
        return self


class RetrievalSpec(Strict):
    """Caption-to-image and image-to-caption retrieval on held-out scenes by a token-image matcher
    (a caption's score for an image: the mean relevance of its tokens): recall@k, the share of
    queries whose own image (caption) ranks in the top k of a gallery of `gallery` test scenes;
    against the untrained matcher and chance (k / gallery). Pictures: captions with the images
    they retrieve."""

    kind: Literal["retrieval"] = "retrieval"
    gallery: int = Field(1000, gt=1, description="Test (and validation) scenes ranked against each other.")
    ks: list[int] = Field([1, 5], min_length=1, description="The k of each recall@k.")
    examples: int = Field(6, ge=0, description="Test captions drawn (seeded) for the picture of retrieved images.")

    def datasets(self) -> tuple[str, ...]:
        return ("wordnet_corpus",)  # its tokenizer, to print the captions of the picture

    @model_validator(mode="after")
    def _check(self) -> RetrievalSpec:
        if any(k < 1 or k > self.gallery for k in self.ks):
            raise ValueError(f"each k must be in [1, gallery={self.gallery}] (got {self.ks})")
        return self


class VokenizeSpec(Strict):
    """Vokenization (Tan & Bansal 2020): every token of a text corpus, in its context, gets its
    voken, the image of a fixed pool that the matcher scores highest for it (exact inner-product
    search, faiss); a token of a type the matcher never read in its training captions gets none
    (its embedding was never trained). The pool: `pool` scenes of this spec's training split (seeded). Writes the
    vokenized corpus as a dataset (modality `text`: `input` token ids, `vokens` the voken of each
    token, IGNORE at padding and special tokens; its classes are the pool's images, named by their
    captions) into artifacts/<spec>/evaluate/dataset/, for a language model with
    `upstream: {data: <this spec>}`. Reports the share of the pool used as vokens, and how often a
    clothing word's voken shows an item of the class it names (against the untrained matcher and
    chance)."""

    kind: Literal["vokenize"] = "vokenize"
    corpus: Literal["wordnet_corpus"] = Field("wordnet_corpus", description="The text corpus vokenized.")
    pool: int = Field(1000, gt=1, description="Training scenes that make the voken pool.")
    max_sentences: int | None = Field(
        None, gt=0, description="Vokenize only the first this many training sentences of the corpus (all of its "
                                "test sentences); default: all.")
    batch_size: int = Field(512, gt=0, description="Sentences encoded at once.")

    def datasets(self) -> tuple[str, ...]:
        return (self.corpus,)


class TextProbeSpec(Strict):
    """A language model's sentence features (the mean of its last layer over the tokens) probed
    by logistic regression on a labelled text task (L2 chosen on validation): WordNet noun
    supersenses of glosses (26 classes), or grounded facts (whether a sentence comparing two
    clothing items' brightness or size is true, by Fashion-MNIST's images; each test sentence names
    a class no training sentence names, so the probe must read that class's brightness or size off
    the features). Against the same network untrained and the majority class."""

    kind: Literal["text_probe"] = "text_probe"
    dataset: Literal["wordnet_supersense", "grounded_facts"] = Field(description="The labelled text task.")
    weight_decays: list[float] = Field([1e-2, 1e-3, 1e-4], min_length=1,
                                       description="L2 strengths tried; the best on validation is kept.")
    max_iter: int = Field(200, gt=0, description="L-BFGS iterations at most, per L2 strength.")
    train_subset: int | None = Field(None, gt=0, description="Fit on only this many training sentences (seeded); "
                                                             "default: all.")
    val_fraction: float = Field(0.1, gt=0, lt=1, description="Training sentences held out to choose the L2.")

    def datasets(self) -> tuple[str, ...]:
        return (self.dataset,)
