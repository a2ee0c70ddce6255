"""Vokenization: each token of a corpus, in its context, assigned the image of a fixed pool its
matcher scores highest (exact inner-product search with faiss), written as a dataset that a
language model trains on (see pipeline.data.written)."""

from __future__ import annotations

import time

import numpy as np
import torch

from pipeline.data import written
from pipeline.data.datamodule import model_input
from pipeline.data.fashion_mnist import CLASSES
from pipeline.data.text import IGNORE, NO_CLASS, VOCAB_SIZE
from pipeline.evaluators.context import Context, Headline, TaskResult
from pipeline.extras import require
from pipeline.models.voken import figures


def pool_index(embeddings: torch.Tensor):
    """An exact inner-product index (faiss) over the pool's image embeddings [P, D]."""
    faiss = require("faiss", "voken", "vokenization (its nearest-image search)")
    index = faiss.IndexFlatIP(embeddings.shape[1])
    index.add(np.ascontiguousarray(embeddings.numpy(), dtype=np.float32))
    return index


@torch.no_grad()
def image_embeddings(matcher, images: torch.Tensor, batch_size: int = 256, device: str = "cpu") -> torch.Tensor:
    matcher.eval().to(device)
    return torch.cat([matcher.image_embeddings(model_input(images[i:i + batch_size].to(device))).float().cpu()
                      for i in range(0, len(images), batch_size)])


@torch.no_grad()
def assign_vokens(matcher, tokens: torch.Tensor, index, batch_size: int = 512, device: str = "cpu",
                  known: torch.Tensor | None = None) -> torch.Tensor:
    """The voken of every token, int64 [N, L]: the pool image nearest its contextual embedding;
    IGNORE at padding and special tokens, and at tokens of a type outside `known` (bool [vocab]:
    the types the matcher read in training; its embedding of any other type is untrained)."""
    matcher.eval().to(device)
    vokens = torch.full(tokens.shape, IGNORE, dtype=torch.int64)
    for start in range(0, len(tokens), batch_size):
        chunk = tokens[start:start + batch_size]
        real = matcher.real_tokens(chunk.to(device)).cpu()
        if known is not None:
            real &= known[chunk]
        queries = matcher.token_embeddings(chunk.to(device)).float().cpu()[real]
        if len(queries):
            _, nearest = index.search(np.ascontiguousarray(queries.numpy()), 1)
            vokens[start:start + len(chunk)][real] = torch.from_numpy(nearest[:, 0]).long()
    return vokens


def clothing_agreement(vokens: torch.Tensor, word_class: torch.Tensor, pool_items: torch.Tensor
                       ) -> tuple[float, float, int]:
    """Over tokens that name a clothing class: the share whose voken shows an item of that class,
    the same share expected by chance (each token's class's share of the pool), and their count."""
    named = (word_class != NO_CLASS) & (vokens != IGNORE)
    classes, chosen = word_class[named], vokens[named]
    if not len(classes):
        return float("nan"), float("nan"), 0
    shows = (pool_items[chosen] == classes[:, None]).any(dim=1)
    share = torch.stack([(pool_items == c).any(dim=1).float().mean() for c in range(len(CLASSES))])
    return float(shows.float().mean()), float(share[classes].mean()), int(len(classes))


def run(task, ctx: Context) -> TaskResult:
    from pipeline import plugins
    from pipeline.data.datamodule import load_splits
    from pipeline.data.fetch import require_dataset
    from pipeline.data.voken.tokenizer import decode, load_tokenizer
    from pipeline.spec.components import DataSpec

    started = time.perf_counter()
    corpus = load_splits(DataSpec(dataset=task.corpus, val_fraction=0.0), ctx.spec.seed)
    tokenizer = load_tokenizer(require_dataset(plugins.datasets()[task.corpus]))
    train_sentences = corpus.train["input"][: task.max_sentences] if task.max_sentences else corpus.train["input"]
    train_classes = corpus.train["word_class"][: len(train_sentences)]

    pool_ids = torch.randperm(len(ctx.splits.train["input"]),
                              generator=torch.Generator().manual_seed(ctx.spec.seed))[:task.pool]
    pool_images, pool_items = ctx.splits.train["input"][pool_ids], ctx.splits.train["items"][pool_ids]
    # The token types the matcher read in its training captions: only those have a trained
    # embedding, so only their tokens get a voken (the rest would be noise from initial weights).
    known = torch.zeros(VOCAB_SIZE, dtype=torch.bool)
    known[ctx.splits.train["tokens"].unique()] = True
    metrics: dict[str, float] = {"pool": float(len(pool_ids)), "known_token_types": float(known.sum())}
    vokens = {}
    for name, model in (("trained", ctx.trained), ("untrained", ctx.initial)):
        index = pool_index(image_embeddings(model, pool_images, device=ctx.device))
        vokens[name, "test"] = assign_vokens(model, corpus.test["input"], index, task.batch_size, ctx.device, known)
        agree, chance, named = clothing_agreement(vokens[name, "test"], corpus.test["word_class"], pool_items)
        metrics[f"clothing_voken_shows_class_{name}"] = agree
        metrics["clothing_voken_shows_class_chance"] = chance
        metrics["clothing_tokens_test"] = float(named)
        if name == "trained":
            vokens[name, "train"] = assign_vokens(model, train_sentences, index, task.batch_size, ctx.device, known)
            agree_train, _, _ = clothing_agreement(vokens[name, "train"], train_classes, pool_items)
            metrics["clothing_voken_shows_class_trained_train"] = agree_train
    assigned = torch.cat([vokens["trained", "train"], vokens["trained", "test"]])
    real = torch.cat([train_sentences, corpus.test["input"]])
    real = ctx.trained.real_tokens(real)
    metrics["tokens_with_a_voken_share"] = float((assigned != IGNORE).sum() / real.sum().clamp_min(1))
    assigned = assigned[assigned != IGNORE]
    counts = torch.bincount(assigned, minlength=len(pool_ids)).float()
    shares = counts / counts.sum()
    metrics.update({
        "pool_coverage": float((counts > 0).float().mean()),
        "most_frequent_voken_share": float(shares.max()),
        "voken_entropy_bits": float(-(shares[shares > 0] * shares[shares > 0].log2()).sum()),
        "tokens_vokenized": float(len(assigned)),
        "sentences": float(len(train_sentences) + len(corpus.test["input"])),
    })

    pool_captions = ctx.splits.train["tokens"][pool_ids]
    classes = tuple(f"voken {i}: {decode(tokenizer, pool_captions[i].tolist())}" for i in range(len(pool_ids)))
    folder = ctx.out / "dataset"
    written.write_dataset(
        folder, f"{task.corpus}_vokenized",
        f"{task.corpus} with each token's voken: the nearest of {len(pool_ids)} {ctx.spec.data.dataset} training "
        f"scenes by {ctx.spec.name}'s matcher",
        "text",
        {"input": train_sentences.numpy(), "vokens": vokens["trained", "train"].numpy(),
         "word_class": train_classes.numpy()},
        {"input": corpus.test["input"].numpy(), "vokens": vokens["trained", "test"].numpy(),
         "word_class": corpus.test["word_class"].numpy()},
        classes, run_id=ctx.run.run_id if ctx.run else None)
    metrics["wall_time_s"] = time.perf_counter() - started

    # A picture: test sentences that name clothing, each token above its voken.
    names_clothing = (corpus.test["word_class"] != NO_CLASS).any(dim=1).nonzero()[:, 0]
    shown = names_clothing[torch.randperm(len(names_clothing),
                                          generator=torch.Generator().manual_seed(ctx.spec.seed))[:4]]
    sentences, pictures = [], []
    for row in shown.tolist():
        real = (vokens["trained", "test"][row] != IGNORE).nonzero()[:, 0][:12]
        sentences.append([tokenizer.id_to_token(int(corpus.test["input"][row, i])) for i in real])
        pictures.append(pool_images[vokens["trained", "test"][row, real]].numpy())
    artifacts = [folder / written.DESCRIPTION]
    if sentences:
        artifacts.append(figures.voken_strips(sentences, pictures, f"{ctx.spec.name}: tokens and their vokens",
                                            ctx.out / "vokens.png"))
    return TaskResult(metrics, artifacts, Headline(
        "clothing words whose voken shows their class", metrics["clothing_voken_shows_class_trained"],
        {"untrained": metrics["clothing_voken_shows_class_untrained"],
         "chance": metrics["clothing_voken_shows_class_chance"]}))
