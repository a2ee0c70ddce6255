"""Writes the trained encoder's features as a dataset for other specs (see pipeline.data.written)."""

from __future__ import annotations

import torch

from pipeline.data import written
from pipeline.evaluators.context import Context, TaskResult


def run(task, ctx: Context) -> TaskResult:
    features = ctx.features("encoder")
    labels = {split: ctx.labels(split) for split in ("train", "val", "test")}
    # The training split of the written dataset is this spec's downstream training examples
    # (`data.probe_subset` of them, default all) and its validation examples; a spec reading it
    # carves its own validation split from it.
    train = {"input": torch.cat([features["train"], features["val"]]).numpy(),
             "label": torch.cat([labels["train"], labels["val"]]).numpy()}
    test = {"input": features["test"].numpy(), "label": labels["test"].numpy()}
    folder = ctx.out / "dataset"
    written.write_dataset(folder, f"{ctx.spec.name}_features",
                          f"features ({features['test'].shape[1]}-d) of {ctx.spec.name}'s trained encoder",
                          "vector", train, test, ctx.splits.classes, run_id=ctx.run.run_id if ctx.run else None)
    return TaskResult({"examples": float(len(train["label"]) + len(test["label"])),
                       "dimensions": float(features["test"].shape[1])}, [folder / written.DESCRIPTION])
