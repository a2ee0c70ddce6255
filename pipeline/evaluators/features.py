"""Downstream evaluation of frozen features: a linear probe trained to convergence and a
cosine kNN vote. Both are plain functions of feature tensors, so every feature set (the
pretrained encoder, the same encoder untrained, the raw input) is scored the same way."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.data.datamodule import model_input


@torch.no_grad()
def extract_features(encoder: nn.Module, inputs: torch.Tensor, batch_size: int | None = None,
                     device: torch.device | str = "cpu") -> torch.Tensor:
    """Encoder features of inputs [N, ...] (uint8 images or float signals), in eval mode, as
    float32 on the CPU. Default batches: 1024 on a GPU; 32 on a CPU, where small batches stay
    in cache (3x the throughput of 1024 for the SwAV convnet and the CPC patch encoder here)."""
    if batch_size is None:
        batch_size = 32 if torch.device(device).type == "cpu" else 1024
    was_training = encoder.training
    encoder.eval().to(device)
    out = []
    for start in range(0, len(inputs), batch_size):
        chunk = model_input(inputs[start:start + batch_size].to(device))
        out.append(encoder(chunk).float().cpu())
    encoder.train(was_training)
    return torch.cat(out)


def raw_input(inputs: torch.Tensor) -> torch.Tensor:
    """The baseline features: the input itself, flattened (pixels in [0, 1], or the signal)."""
    return model_input(inputs.flatten(1))


@dataclass(frozen=True)
class ProbeResult:
    accuracy: float
    """On the test split."""
    val_accuracy: float
    weight_decay: float
    predictions: torch.Tensor
    """Predicted test labels."""
    weight: torch.Tensor | None = None
    bias: torch.Tensor | None = None
    """The chosen classifier on the raw (unstandardised) features: logits = x @ weight.T + bias."""


def _fit_logistic(x: torch.Tensor, y: torch.Tensor, num_classes: int, weight_decay: float,
                  max_iter: int, start: nn.Linear | None = None) -> nn.Linear:
    layer = nn.Linear(x.shape[1], num_classes)
    with torch.no_grad():
        layer.weight.copy_(start.weight if start is not None else torch.zeros_like(layer.weight))
        layer.bias.copy_(start.bias if start is not None else torch.zeros_like(layer.bias))
    optimizer = torch.optim.LBFGS(layer.parameters(), lr=1.0, max_iter=max_iter, history_size=20,
                                  tolerance_grad=1e-5, tolerance_change=1e-7,
                                  line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(layer(x), y) + weight_decay * layer.weight.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return layer


def linear_probe(train: tuple[torch.Tensor, torch.Tensor], val: tuple[torch.Tensor, torch.Tensor],
                 test: tuple[torch.Tensor, torch.Tensor], num_classes: int,
                 weight_decays: list[float], max_iter: int = 150) -> ProbeResult:
    """Multinomial logistic regression on standardised features by full-batch L-BFGS, one fit
    per L2 strength (strongest first, each warm-started from the previous optimum, which
    converges in far fewer iterations); the strength with the best validation accuracy is
    scored on test."""
    mean = train[0].mean(dim=0)
    std = train[0].std(dim=0).clamp_min(1e-6)

    def scale(x: torch.Tensor) -> torch.Tensor:
        return (x - mean) / std

    x_train, x_val, x_test = scale(train[0]), scale(val[0]), scale(test[0])
    best: tuple[float, float, nn.Linear] | None = None
    with torch.enable_grad():
        layer = None
        for weight_decay in sorted(weight_decays, reverse=True):
            layer = _fit_logistic(x_train, train[1], num_classes, weight_decay, max_iter, layer)
            with torch.no_grad():
                val_accuracy = (
                    (layer(x_val).argmax(1) == val[1]).float().mean().item() if len(val[1]) else 0.0
                )
            if best is None or val_accuracy > best[0]:
                best = (val_accuracy, weight_decay, layer)
    assert best is not None
    with torch.no_grad():
        predictions = best[2](x_test).argmax(1)
    accuracy = (predictions == test[1]).float().mean().item()
    with torch.no_grad():  # the standardisation folded into the layer
        weight = best[2].weight / std
        bias = best[2].bias - weight @ mean
    return ProbeResult(accuracy, best[0], best[1], predictions, weight, bias)


@torch.no_grad()
def knn_scores(train: tuple[torch.Tensor, torch.Tensor], queries: torch.Tensor, k: int = 20,
               temperature: float = 0.07, chunk: int = 1024) -> torch.Tensor:
    """Class scores [N, C] of `queries`: the target vectors [*, C] (one-hot, or multi-hot for
    several labels) of their k most cosine-similar training samples, each weighted by
    exp(similarity / temperature) (Wu et al. 2018), summed."""
    bank = F.normalize(train[0], dim=1)
    k = min(k, len(bank))
    out = []
    for start in range(0, len(queries), chunk):
        sims = F.normalize(queries[start:start + chunk], dim=1) @ bank.T
        top_sims, top_idx = sims.topk(k, dim=1)
        weights = (top_sims / temperature).exp()
        out.append((weights[..., None] * train[1][top_idx]).sum(dim=1))
    return torch.cat(out) if out else torch.zeros(0, train[1].shape[1])


def knn_predict(train: tuple[torch.Tensor, torch.Tensor], queries: torch.Tensor, num_classes: int,
                k: int = 20, temperature: float = 0.07, chunk: int = 1024) -> torch.Tensor:
    """Labels of `queries` by the weighted vote of their k most cosine-similar training samples
    (`knn_scores` with one-hot targets)."""
    one_hot = F.one_hot(train[1], num_classes).float()
    return knn_scores((train[0], one_hot), queries, k, temperature, chunk).argmax(1)


def knn_accuracy(train: tuple[torch.Tensor, torch.Tensor], test: tuple[torch.Tensor, torch.Tensor],
                 num_classes: int, k: int = 20, temperature: float = 0.07) -> tuple[float, torch.Tensor]:
    predictions = knn_predict(train, test[0], num_classes, k, temperature)
    return (predictions == test[1]).float().mean().item(), predictions
