"""kNN: a cosine-similarity vote of the k nearest training examples, on the trained encoder,
the same encoder untrained and the raw input."""

from __future__ import annotations

from pipeline import plots
from pipeline.evaluators.context import Context, Headline, TaskResult
from pipeline.evaluators.features import knn_accuracy


def run(task, ctx: Context) -> TaskResult:
    metrics, predicted = {}, None
    for name in ctx.FEATURE_SETS:
        features = ctx.features(name)
        accuracy, predictions = knn_accuracy((features["train"], ctx.labels("train")),
                                             (features["test"], ctx.labels("test")), ctx.num_classes,
                                             task.k, task.temperature)
        metrics[name] = accuracy
        if ctx.has_validation:
            metrics[f"{name}_val"] = knn_accuracy((features["train"], ctx.labels("train")),
                                                  (features["val"], ctx.labels("val")), ctx.num_classes,
                                                  task.k, task.temperature)[0]
        if name == "encoder":
            predicted = predictions
    picture = plots.confusion_matrix(
        ctx.labels("test").numpy(), predicted.numpy(), ctx.splits.classes,
        f"{ctx.spec.name}: knn on the pretrained encoder ({metrics['encoder']:.1%})", ctx.out / "confusion_knn.png")
    return TaskResult(metrics, [picture], Headline(
        f"kNN (k={task.k})", metrics["encoder"],
        {"raw input": metrics["raw_input"], "untrained": metrics["random_encoder"]},
        validation=metrics.get("encoder_val"),
        baselines_validation={"raw input": metrics["raw_input_val"], "untrained": metrics["random_encoder_val"]}
        if ctx.has_validation else {}))
