"""A continual learner's stream, read from the accuracy matrices its training measured after each
experience (see `pipeline.models.continual.metrics`): the figures, the matrix as a heatmap and the
average accuracy over the experiences seen as a curve."""

from __future__ import annotations

import math

import numpy as np

from pipeline import plots
from pipeline.evaluators.context import Context, Headline, TaskResult
from pipeline.models.continual import figures, strategy_label
from pipeline.models.continual.metrics import average_accuracies


def _names(ctx: Context) -> list[str]:
    """Each experience by its classes (split scenarios) or its index (permuted inputs)."""
    model = ctx.trained
    classes = ctx.splits.classes or ()
    out = []
    for experience in model.experiences:
        if model.spec.scenario.type == "domain_incremental":
            out.append(f"{experience.index}: permutation {experience.index}")
        else:
            out.append(f"{experience.index}: " + ", ".join(classes[c] if c < len(classes) else str(c)
                                                            for c in experience.classes))
    return out


def run(task, ctx: Context) -> TaskResult:
    model = ctx.trained
    if not model.experiences:  # the scenario is rebuilt from the data, as the training built it
        model.build_stream(ctx.splits, ctx.spec.seed)
    metrics: dict[str, float] = {}
    for split, suffix in (("test", ""), ("val", "_val")):
        if split == "val" and not ctx.has_validation:
            continue
        matrix = model.matrix(split)
        summary = model.summary(split)
        metrics.update({f"{name}{suffix}": value for name, value in summary.items() if not math.isnan(value)})
        metrics[f"untrained{suffix}"] = float(np.nanmean(getattr(model, f"initial_{split}").cpu().numpy()))
        seen = [model.seen(i) for i in range(len(matrix))]
        for i, value in enumerate(average_accuracies(matrix, seen)):
            metrics[f"average_accuracy_after_{i}{suffix}"] = value
    metrics.update({name: float(value) for name, value in model.memory().items()})
    names = _names(ctx)
    matrix = model.matrix()
    seen = [model.seen(i) for i in range(len(matrix))]
    rows = [f"{name} ({', '.join(str(j) for j in checked)})" if len(checked) > 1 else names[checked[0]]
            for name, checked in model.strategy.phases()[: len(matrix)]]
    strategy = strategy_label(model.spec.strategy)
    average = metrics["average_accuracy"]
    pictures = [figures.accuracy_matrix(matrix, rows, names,
                                        f"{ctx.spec.name}: {strategy}, average {100 * average:.1f}%",
                                        ctx.out / "accuracy_matrix.png")]
    curve = {"average over experiences seen": list(enumerate(average_accuracies(matrix, seen))),
             **{f"experience {j}": [(i, float(matrix[i, j])) for i in range(len(matrix)) if j in seen[i]]
                for j in range(len(model.experiences)) if len(matrix) > 1}}
    pictures.append(plots.lines(curve, f"{ctx.spec.name}: test accuracy as the stream goes on",
                                "after experience", "accuracy", ctx.out / "accuracy_over_experiences.png"))
    headline = Headline(f"{strategy}: average accuracy after the last experience", average,
                        baselines={"untrained network": metrics["untrained"]},
                        validation=metrics.get("average_accuracy_val"),
                        baselines_validation={"untrained network": metrics["untrained_val"]}
                        if "untrained_val" in metrics else {})
    return TaskResult(metrics, pictures, headline)
