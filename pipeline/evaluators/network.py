"""The trained network's own test accuracy (a classifier's, or a spiking network's decision),
with its confusion matrix."""

from __future__ import annotations

import torch

from pipeline import plots
from pipeline.data.datamodule import model_input
from pipeline.evaluators.context import Context, Headline, TaskResult


@torch.no_grad()
def predictions(ctx: Context, split: str = "test") -> torch.Tensor:
    """The network's predicted labels of a split: from the spiking pass where the model spikes
    (on the test split, one pass gives the spike statistics too), else by its `predict`."""
    if "spikes" in ctx.spec.provides:
        from pipeline.evaluators.spike_stats import run_spiking, spiking_pass

        if split == "test":
            return spiking_pass(ctx).predictions
        return run_spiking(ctx.trained, ctx.split(split)[0], ctx.device).predictions
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
