"""Linear probe: logistic regression on frozen features (L2 chosen on validation), on the trained
encoder, the same encoder untrained and the raw input."""

from __future__ import annotations

from pipeline import plots
from pipeline.evaluators.context import Context, Headline, TaskResult
from pipeline.evaluators.features import linear_probe


def run(task, ctx: Context) -> TaskResult:
    metrics, predicted = {}, None
    for name in ctx.FEATURE_SETS:
        features = ctx.features(name)
        train, val, test = ((features[s], ctx.labels(s)) for s in ("train", "val", "test"))
        probe = linear_probe(train, val, test, ctx.num_classes, task.weight_decays, task.max_iter)
        metrics[name] = probe.accuracy
        metrics[f"{name}_val"] = probe.val_accuracy
        metrics[f"{name}_weight_decay"] = probe.weight_decay
        if name == "encoder":
            predicted = probe.predictions
    picture = plots.confusion_matrix(
        ctx.labels("test").numpy(), predicted.numpy(), ctx.splits.classes,
        f"{ctx.spec.name}: linear_probe on the pretrained encoder ({metrics['encoder']:.1%})",
        ctx.out / "confusion_linear_probe.png")
    return TaskResult(metrics, [picture], Headline(
        "linear probe", metrics["encoder"], {"raw input": metrics["raw_input"], "untrained": metrics["random_encoder"]},
        validation=metrics["encoder_val"] if ctx.has_validation else None,
        baselines_validation={"raw input": metrics["raw_input_val"], "untrained": metrics["random_encoder_val"]}
        if ctx.has_validation else {}))
