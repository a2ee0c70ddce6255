"""The trained network's own test accuracy (a classifier's, or a spiking network's decision),
with its confusion matrix."""

from __future__ import annotations

import torch

from pipeline import plots
from pipeline.data.datamodule import model_input
from pipeline.evaluators.context import Context, Headline, TaskResult
from pipeline.plugins import resolve


@torch.no_grad()
def predictions(ctx: Context, split: str = "test") -> torch.Tensor:
    """The network's predicted labels of a split: by its family's own pass where its entry names one
    (`ModelEntry.predictions`: a spiking network's, which gives its spike statistics too), else by
    its `predict`."""
    hook = ctx.model_entry.predictions if ctx.model_entry is not None else None
    if hook is not None:
        return resolve(hook)(ctx, split)
    inputs = ctx.split(split)[0]
    model = ctx.trained.to(ctx.device)
    return torch.cat([model.predict(model_input(inputs[i:i + 256].to(ctx.device))).cpu()
                      for i in range(0, len(inputs), 256)])


def run(task, ctx: Context) -> TaskResult:
    predicted = ctx.cached("network/predictions", lambda: predictions(ctx))
    labels = ctx.labels("test")
    accuracy = (predicted == labels).sum().item() / len(labels)
    valid = predicted >= 0  # a spiking network may not decide (no output spike): wrong, and not drawn
    picture = plots.confusion_matrix(labels[valid].numpy(), predicted[valid].numpy(), ctx.splits.classes,
                                     f"{ctx.spec.name}: the network itself ({accuracy:.1%})",
                                     ctx.out / "confusion_network.png")
    metrics = {"accuracy": accuracy}
    if ctx.has_validation:  # what the spec's settings may be chosen on; the test split is scored once
        val_labels = ctx.labels("val")
        metrics["accuracy_val"] = (predictions(ctx, "val") == val_labels).sum().item() / len(val_labels)
    return TaskResult(metrics, [picture], Headline("the network itself", accuracy,
                                                   validation=metrics.get("accuracy_val")))
