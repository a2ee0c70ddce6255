"""A language model probed on a labelled text task: logistic regression on its frozen sentence
features, against the same network untrained and the majority class."""

from __future__ import annotations

import torch

from pipeline import plots
from pipeline.evaluators.context import Context, Headline, TaskResult
from pipeline.evaluators.features import extract_features, linear_probe


def run(task, ctx: Context) -> TaskResult:
    from pipeline.data.datamodule import load_splits
    from pipeline.spec.components import DataSpec

    data = load_splits(DataSpec(dataset=task.dataset, val_fraction=task.val_fraction,
                                train_subset=task.train_subset), ctx.spec.seed)
    splits = {name: data.pair(name) for name in ("train", "val", "test")}
    metrics: dict[str, float] = {}
    predicted = None
    for name, model in (("trained", ctx.trained), ("untrained", ctx.initial)):
        features = {split: extract_features(model.encoder, ids, batch_size=256, device=ctx.device)
                    for split, (ids, _) in splits.items()}
        probe = linear_probe(*((features[s], splits[s][1]) for s in ("train", "val", "test")), data.num_classes,
                             task.weight_decays, task.max_iter)
        metrics[name], metrics[f"{name}_val"], metrics[f"{name}_weight_decay"] = (
            probe.accuracy, probe.val_accuracy, probe.weight_decay)
        if name == "trained":
            predicted = probe.predictions
    majority = int(torch.bincount(splits["train"][1]).argmax())
    for split in ("test", "val"):
        metrics["majority" + ("_val" if split == "val" else "")] = float((splits[split][1] == majority).float().mean())
    metrics["train_sentences"] = float(len(splits["train"][1]))
    title = {"wordnet_supersense": "noun supersense of WordNet glosses", "grounded_facts": "grounded facts"}
    picture = plots.confusion_matrix(
        splits["test"][1].numpy(), predicted.numpy(), data.classes,
        f"{ctx.spec.name}: {title[task.dataset]}, probe {metrics['trained']:.1%}",
        ctx.out / f"confusion_{task.dataset}.png")
    return TaskResult(metrics, [picture], Headline(
        f"{title[task.dataset]} (probe)", metrics["trained"],
        {"untrained": metrics["untrained"], "majority class": metrics["majority"]},
        validation=metrics["trained_val"],
        baselines_validation={"untrained": metrics["untrained_val"], "majority class": metrics["majority_val"]}))
