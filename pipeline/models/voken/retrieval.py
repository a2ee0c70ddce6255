"""Caption-image retrieval by a token-image matcher: recall@k both ways on held-out scenes,
against the same matcher untrained and chance."""

from __future__ import annotations

import torch

from pipeline.data.datamodule import model_input
from pipeline.evaluators.context import Context, Headline, TaskResult
from pipeline.models.voken import figures
from pipeline.models.voken.losses import caption_scores


@torch.no_grad()
def score_matrix(matcher, tokens: torch.Tensor, images: torch.Tensor, batch_size: int = 256,
                 device: str = "cpu") -> torch.Tensor:
    """[captions, images] scores: each caption's mean token relevance to each image."""
    was_training = matcher.training
    matcher.eval().to(device)
    image_embeddings = torch.cat([matcher.image_embeddings(model_input(images[i:i + batch_size].to(device)))
                                  for i in range(0, len(images), batch_size)])
    rows = []
    for start in range(0, len(tokens), batch_size):
        chunk = tokens[start:start + batch_size].to(device)
        per_token = torch.einsum("bld,nd->bln", matcher.token_embeddings(chunk), image_embeddings)
        rows.append(caption_scores(per_token, matcher.real_tokens(chunk)).cpu())
    matcher.train(was_training)
    return torch.cat(rows)


def recall_at(scores: torch.Tensor, ks: list[int]) -> dict[int, float]:
    """Recall@k of a square score matrix whose diagonal holds each query's match: the share of
    rows whose match ranks among the k highest (ties counted against it)."""
    matched = scores.diagonal()[:, None]
    rank = (scores > matched).sum(1) + (scores == matched).sum(1) - 1  # 0 = first
    return {k: float((rank < k).float().mean()) for k in ks}


def run(task, ctx: Context) -> TaskResult:
    metrics: dict[str, float] = {}
    splits = ("test", "val") if ctx.has_validation else ("test",)
    test_scores = None
    for split in splits:
        fields = getattr(ctx.splits, split)
        size = min(task.gallery, len(fields["input"]))
        tokens, images = fields["tokens"][:size], fields["input"][:size]
        suffix = "" if split == "test" else "_val"
        for name, model in (("trained", ctx.trained), ("untrained", ctx.initial)):
            scores = score_matrix(model, tokens, images, device=ctx.device)
            if split == "test" and name == "trained":
                test_scores = scores
            for direction, matrix in (("caption_to_image", scores), ("image_to_caption", scores.T)):
                for k, value in recall_at(matrix, task.ks).items():
                    metrics[f"{direction}_r{k}_{name}{suffix}"] = value
        for k in task.ks:
            metrics[f"r{k}_chance{suffix}"] = k / size
    artifacts = []
    if task.examples:
        from pipeline import plugins
        from pipeline.data.fetch import require_dataset
        from pipeline.data.voken.tokenizer import decode, load_tokenizer

        tokenizer = load_tokenizer(require_dataset(plugins.datasets()["wordnet_corpus"]))
        picks = torch.randperm(len(test_scores), generator=torch.Generator().manual_seed(ctx.spec.seed))[:task.examples]
        top = test_scores[picks].topk(min(5, test_scores.shape[1]), dim=1).indices
        artifacts.append(figures.retrieved_images(
            [decode(tokenizer, ctx.splits.test["tokens"][i].tolist()) for i in picks.tolist()],
            ctx.splits.test["input"][top].numpy(), picks.tolist(), top.tolist(),
            f"{ctx.spec.name}: captions and the test scenes they retrieve (true scene framed)",
            ctx.out / "retrieval_examples.png"))
    k = task.ks[0]
    return TaskResult(metrics, artifacts, Headline(
        f"caption-to-image R@{k}, {min(task.gallery, len(ctx.splits.test['input']))} scenes",
        metrics[f"caption_to_image_r{k}_trained"],
        {"untrained": metrics[f"caption_to_image_r{k}_untrained"], "chance": metrics[f"r{k}_chance"]},
        validation=metrics.get(f"caption_to_image_r{k}_trained_val"),
        baselines_validation={"untrained": metrics[f"caption_to_image_r{k}_untrained_val"],
                              "chance": metrics[f"r{k}_chance_val"]} if ctx.has_validation else {}))
