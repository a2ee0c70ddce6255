"""The trained network's own test accuracy (a classifier's, or a spiking network's decision),
with its confusion matrix."""

from __future__ import annotations

import torch

from pipeline import plots
from pipeline.data.datamodule import model_input
from pipeline.evaluators.context import Context, Headline, TaskResult


@torch.no_grad()
def predictions(ctx: Context) -> torch.Tensor:
    """The network's predicted test labels: from the spiking pass where the model spikes (one
    pass gives the spike statistics too), else by its `predict`."""
    if "spikes" in ctx.spec.provides:
        from pipeline.evaluators.spike_stats import spiking_pass

        return spiking_pass(ctx).predictions
    inputs = ctx.split("test")[0]
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
    return TaskResult({"accuracy": accuracy}, [picture], Headline("the network itself", accuracy))
