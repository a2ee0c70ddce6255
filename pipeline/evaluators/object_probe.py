"""Which objects a video holds, read off the encoder's top representation after the sequence.

Each sequence holds several moving items (`labels` [N, items], their classes, possibly equal), so
the probe is multi-label: its target is the multi-hot vector of the sequence's classes. Two
probes, each on three feature sets (the trained encoder, the same encoder untrained, the raw
frames: the last one, average-pooled to at most 32x32, flattened), scored the same way:

- linear: one-vs-rest logistic regression (binary cross-entropy summed over the classes, averaged
  over the sequences) on standardised features by full-batch L-BFGS, one fit per L2 strength
  (strongest first, each warm-started from the previous optimum); the strength with the best
  validation object recall is scored on test;
- kNN: the k most cosine-similar training sequences each vote their multi-hot vector, weighted
  by exp(similarity / temperature).

Object recall: for a sequence whose classes are the set S (1 or 2 distinct classes here), the
share of S among the |S| classes the probe scores highest (ties broken by class index), averaged
over the sequences."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pipeline import plots
from pipeline.data.datamodule import model_input
from pipeline.evaluators.context import SPLITS, Context, Headline, TaskResult
from pipeline.evaluators.features import extract_features, knn_scores

FEATURE_SETS = {"encoder": "trained encoder", "random_encoder": "untrained", "raw_frames": "raw frames"}
"""Each feature set's metric name and its name in the picture and the headline."""
RAW_SIDE = 32
"""The raw frames baseline pools the last frame to at most this many pixels a side."""


def multi_hot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """float [N, num_classes]: 1 for each class among a sequence's item classes [N, items]."""
    return torch.zeros(len(labels), num_classes).scatter_(1, labels.long(), 1.0)


def in_top(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """bool [N, C]: the classes among each sequence's top-|S| scores, |S| its number of classes."""
    order = scores.argsort(dim=1, descending=True, stable=True)
    ranks = order.argsort(dim=1)
    return ranks < targets.sum(dim=1, keepdim=True)


def object_recall(scores: torch.Tensor, targets: torch.Tensor) -> float:
    """The share of each sequence's classes (multi-hot `targets` [N, C]) among its top-|S| scored
    classes (`scores` [N, C]), averaged over the sequences; 0 where there are none."""
    if not len(targets):
        return 0.0
    hits = (targets * in_top(scores, targets)).sum(dim=1)
    return (hits / targets.sum(dim=1)).mean().item()


def per_class_recall(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """[C]: for each class, the share of the sequences holding it that have it among their top-|S|."""
    hits = (targets * in_top(scores, targets)).sum(dim=0)
    return hits / targets.sum(dim=0).clamp_min(1)


def raw_frames(inputs: torch.Tensor) -> torch.Tensor:
    """The baseline features of videos [N, T, C, H, W]: the last frame in [0, 1], average-pooled to
    at most RAW_SIDE x RAW_SIDE, flattened."""
    last = model_input(inputs[:, -1])
    side = (min(last.shape[-2], RAW_SIDE), min(last.shape[-1], RAW_SIDE))
    return F.adaptive_avg_pool2d(last, side).flatten(1)


@dataclass(frozen=True)
class MultiLabelProbe:
    recall: float
    """On the test split."""
    val_recall: float
    weight_decay: float
    scores: torch.Tensor
    """Logits of the test sequences [N, C]."""


def _fit_one_vs_rest(x: torch.Tensor, targets: torch.Tensor, weight_decay: float, max_iter: int,
                     start: nn.Linear | None) -> nn.Linear:
    layer = nn.Linear(x.shape[1], targets.shape[1])
    with torch.no_grad():
        layer.weight.copy_(start.weight if start is not None else torch.zeros_like(layer.weight))
        layer.bias.copy_(start.bias if start is not None else torch.zeros_like(layer.bias))
    optimizer = torch.optim.LBFGS(layer.parameters(), lr=1.0, max_iter=max_iter, history_size=20,
                                  tolerance_grad=1e-5, tolerance_change=1e-7, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        data = F.binary_cross_entropy_with_logits(layer(x), targets, reduction="sum") / len(x)
        loss = data + weight_decay * layer.weight.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return layer


def linear_multilabel(train: tuple[torch.Tensor, torch.Tensor], val: tuple[torch.Tensor, torch.Tensor],
                      test: tuple[torch.Tensor, torch.Tensor], weight_decays: list[float],
                      max_iter: int = 150) -> MultiLabelProbe:
    """One-vs-rest logistic regression on (features, multi-hot targets) pairs (see the module's
    docstring); the L2 strength with the best validation object recall (the strongest of equals)
    is scored on test."""
    mean = train[0].mean(dim=0)
    std = train[0].std(dim=0).clamp_min(1e-6)
    x_train, x_val, x_test = ((x - mean) / std for x in (train[0], val[0], test[0]))
    best: tuple[float, float, nn.Linear] | None = None
    with torch.enable_grad():
        layer = None
        for weight_decay in sorted(weight_decays, reverse=True):
            layer = _fit_one_vs_rest(x_train, train[1], weight_decay, max_iter, layer)
            with torch.no_grad():
                val_recall = object_recall(layer(x_val), val[1])
            if best is None or val_recall > best[0]:
                best = (val_recall, weight_decay, layer)
    assert best is not None
    with torch.no_grad():
        scores = best[2](x_test)
    return MultiLabelProbe(object_recall(scores, test[1]), best[0], best[1], scores)


def run(task, ctx: Context) -> TaskResult:
    inputs = {s: getattr(ctx.splits, s)["input"] for s in SPLITS}
    inputs["train"] = inputs["train"][:task.train_subset]
    targets = {s: multi_hot(getattr(ctx.splits, s)["labels"][:len(inputs[s])], ctx.num_classes) for s in SPLITS}

    def features(name: str) -> dict[str, torch.Tensor]:
        def compute() -> dict[str, torch.Tensor]:
            if name == "raw_frames":
                return {s: raw_frames(x) for s, x in inputs.items()}
            encoder = {"encoder": ctx.trained, "random_encoder": ctx.initial}[name].encoder
            return {s: extract_features(encoder, x, device=ctx.device) if len(x) else torch.zeros(0, encoder.out_dim)
                    for s, x in inputs.items()}  # no validation split where data.val_fraction is 0

        return ctx.cached(f"object_probe/features/{name}/{task.train_subset}", compute)

    metrics, per_class = {}, {}
    for name, shown in FEATURE_SETS.items():
        x = features(name)
        train, val, test = ((x[s], targets[s]) for s in SPLITS)
        probe = linear_multilabel(train, val, test, task.weight_decays, task.max_iter)
        metrics[f"linear_{name}"] = probe.recall
        metrics[f"linear_{name}_weight_decay"] = probe.weight_decay
        per_class[shown] = per_class_recall(probe.scores, test[1]).tolist()
        metrics[f"knn_{name}"] = object_recall(knn_scores(train, test[0], task.k, task.temperature), test[1])
        if ctx.has_validation:
            metrics[f"linear_{name}_val"] = probe.val_recall
            metrics[f"knn_{name}_val"] = object_recall(knn_scores(train, val[0], task.k, task.temperature), val[1])
    picture = plots.grouped_bars(
        per_class, ctx.splits.classes,
        f"{ctx.spec.name}: object recall of the linear probe per class (trained encoder "
        f"{metrics['linear_encoder']:.1%})", "share of the sequences holding it found", ctx.out / "object_probe.png")

    baselines = {shown: name for name, shown in FEATURE_SETS.items() if name != "encoder"}
    return TaskResult(metrics, [picture], Headline(
        "linear probe object recall", metrics["linear_encoder"],
        {shown: metrics[f"linear_{name}"] for shown, name in baselines.items()},
        validation=metrics.get("linear_encoder_val"),
        baselines_validation={shown: metrics[f"linear_{name}_val"] for shown, name in baselines.items()}
        if ctx.has_validation else {}))
