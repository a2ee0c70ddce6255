"""The `length_generalization` task: the network's test accuracy on its own data at the length it
trained at and on the same examples at longer lengths."""

from __future__ import annotations

import numpy as np
import torch

from pipeline import plots
from pipeline.data.datamodule import model_input
from pipeline.errors import PipelineError
from pipeline.evaluators.context import Context, Headline, TaskResult
from pipeline.evaluators.network import predictions
from pipeline.models.ood import LONGER
from pipeline.models.ood.outputs import limited

BATCH = 256


@torch.no_grad()
def accuracy(model, inputs: torch.Tensor, labels: torch.Tensor, device: str) -> float:
    predicted = torch.cat([model.predict(model_input(inputs[start:start + BATCH]).to(device)).cpu()
                           for start in range(0, len(inputs), BATCH)])
    return (predicted == labels).double().mean().item()


def run(task, ctx: Context) -> TaskResult:
    from pipeline import plugins
    from pipeline.data.fetch import require_dataset

    own = ctx.spec.data.dataset
    registered = plugins.datasets()
    for name in task.datasets():
        if name not in LONGER.get(own, ()):
            raise PipelineError(f"length_generalization: {name} is a longer version of "
                                f"{next(k for k, v in LONGER.items() if name in v)}, not of the spec's data {own}")
    model = ctx.trained.eval().to(ctx.device)
    labels = ctx.labels("test")
    curve = [(ctx.splits.input_shape[-1], (predictions(ctx, "test") == labels).double().mean().item())]
    for name in task.datasets():
        source = registered[name]
        test = source.load_reader()(require_dataset(source)).test
        inputs, targets = torch.from_numpy(np.asarray(test["input"])), torch.from_numpy(np.asarray(test["label"]))
        keep = limited(len(inputs), task.max_examples, ctx.spec.seed, name)
        if keep is not None:
            inputs, targets = inputs[keep], targets[keep]
        curve.append((inputs.shape[-1], accuracy(model, inputs, targets, ctx.device)))
    curve.sort()
    metrics = {f"accuracy_length_{length}": value for length, value in curve}
    trained_length, trained = curve[0]
    longest, last = curve[-1]
    for index, (length, value) in enumerate(curve):
        ctx.log_series({"length_generalization/length": length, "length_generalization/accuracy_curve": value},
                       step=index)
    picture = plots.lines({"test split": [(float(length), value) for length, value in curve]},
                          f"{ctx.spec.name}: accuracy against sequence length (trained at {trained_length})",
                          "sequence length (steps)", "accuracy", ctx.out / "length_generalization.png")
    return TaskResult(metrics, [picture], Headline(f"accuracy at length {longest}", last,
                                                   {f"at the training length {trained_length}": trained}))
