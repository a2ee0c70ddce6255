"""The `length_generalization` task: the network's test accuracy on its own data at the length it
trained at and on the same test examples at longer lengths."""

from __future__ import annotations

import numpy as np
import torch

from pipeline import plots
from pipeline.data.datamodule import model_input
from pipeline.errors import PipelineError
from pipeline.evaluators.context import Context, Headline, TaskResult
from pipeline.evaluators.noise_robustness import accuracy
from pipeline.models.ood import LONGER
from pipeline.models.ood.outputs import limited


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
    # The same test examples at every length: the official test split at the training length too (not
    # the spec's eval_subset of it), one seeded subset of them where max_examples asks for one.
    tests = {name: registered[name].load_reader()(require_dataset(registered[name])).test
             for name in (own, *task.datasets())}
    labels = torch.from_numpy(np.asarray(tests[own]["label"]))
    keep = limited(len(labels), task.max_examples, ctx.spec.seed, "length_generalization")
    curve = []
    for name, test in tests.items():
        inputs, targets = torch.from_numpy(np.asarray(test["input"])), torch.from_numpy(np.asarray(test["label"]))
        if not torch.equal(targets, labels):
            raise PipelineError(f"length_generalization: {name}'s test labels differ from {own}'s; run "
                                f"`pipeline fetch {name} --force`")
        if keep is not None:
            inputs, targets = inputs[keep], targets[keep]
        curve.append((inputs.shape[-1], accuracy(model, model_input(inputs), targets, ctx.device)))
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
