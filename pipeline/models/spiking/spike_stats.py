"""What a spiking network spends: spikes and firing rate per layer, sparsity, synaptic
operations and neuron updates against the MACs (and per-neuron bias and activation) of the
same-shaped non-spiking network, the energy estimate split into its synaptic and neuron parts (see
`pipeline.models.spiking.stats` for what is counted and what is left out), a spike raster and
membrane traces of one test example.

One evaluation loop for every spiking family: the family's `spike_batch` runs a batch and
counts what its layers did; the loop adds the counts up per example."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from pipeline.data.datamodule import model_input
from pipeline.evaluators.context import Context, Headline, TaskResult
from pipeline.models.spiking import stats


@dataclass
class SpikingPass:
    predictions: torch.Tensor
    metrics: dict[str, float]
    first: Any
    """What the family recorded of the first test example (for its pictures)."""


@torch.no_grad()
def run_spiking(model, inputs: torch.Tensor, device: str, batch_size: int = 256) -> SpikingPass:
    model = model.to(device)
    predictions, counts, first, steps = [], None, None, 1
    extras: dict[str, list[float]] = {}
    for start in range(0, len(inputs), batch_size):
        out = model.spike_batch(model_input(inputs[start:start + batch_size].to(device)), keep_first=start == 0)
        predictions.append(out.predictions.cpu())
        counts = stats.accumulate(counts, out.counts)
        if start == 0:
            first, steps = out.first, out.steps
        for name, (numerator, denominator) in out.extras.items():
            total = extras.setdefault(name, [0.0, 0.0])
            total[0] += numerator
            total[1] += denominator
    stats.per_sample(counts, len(inputs))
    metrics = {**stats.summarise(counts, steps),
               **{name: numerator / max(denominator, 1e-12) for name, (numerator, denominator) in extras.items()}}
    return SpikingPass(torch.cat(predictions), metrics, first)


def spiking_pass(ctx: Context) -> SpikingPass:
    return ctx.cached("spikes/pass", lambda: run_spiking(ctx.trained, ctx.split("test")[0], ctx.device))


def predictions(ctx: Context, split: str) -> torch.Tensor:
    """The network's decisions on a split, by the spiking pass (the `network` task's hook): on the
    test split, the one pass that also gives the spike statistics."""
    if split == "test":
        return spiking_pass(ctx).predictions
    return run_spiking(ctx.trained, ctx.split(split)[0], ctx.device).predictions


def run(task, ctx: Context) -> TaskResult:
    result = spiking_pass(ctx)
    label = ctx.splits.classes[int(ctx.labels("test")[0])]
    pictures = ctx.trained.spike_pictures(result.first, label, ctx.splits.classes, ctx.out)
    metrics = result.metrics
    return TaskResult(dict(metrics), pictures, Headline(
        "energy, ANN / SNN", metrics["energy_ratio_ann_over_snn"], unit="x"))


def evaluate_spiking(model, inputs: torch.Tensor, labels: torch.Tensor, classes: tuple[str, ...], out,
                     device: str = "cpu") -> tuple[dict[str, float], list]:
    """A spiking model's accuracy, spike statistics and pictures on (inputs, labels), outside a
    pipeline run: the same loop and counts as the `network` and `spike_stats` tasks."""
    result = run_spiking(model, inputs, device)
    metrics = {"accuracy": (result.predictions == labels).sum().item() / len(labels), **result.metrics}
    return metrics, model.spike_pictures(result.first, classes[int(labels[0])], classes, out)
