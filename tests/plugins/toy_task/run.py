"""`toy_topk`: run by the evaluate stage as run(task_spec, context)."""

from __future__ import annotations

import torch

from pipeline.data.datamodule import model_input
from pipeline.evaluators.context import Context, Headline, TaskResult


@torch.no_grad()
def top_k(ctx: Context, split: str, k: int) -> float:
    inputs, labels = ctx.split(split)
    model = ctx.trained.eval().to(ctx.device)
    scores = torch.cat([model.classify(model_input(inputs[i:i + 256].to(ctx.device))).cpu()
                        for i in range(0, len(inputs), 256)])
    hits = (scores.topk(k, dim=1).indices == labels[:, None]).any(dim=1)
    return hits.float().mean().item()


def run(task, ctx: Context) -> TaskResult:
    if task.k > ctx.num_classes:
        raise ValueError(f"toy_topk: k = {task.k} is above the {ctx.num_classes} classes")
    chance = task.k / ctx.num_classes
    metrics = {"top_k": top_k(ctx, "test", task.k), "chance": chance}
    validation = top_k(ctx, "val", task.k) if ctx.has_validation else None
    return TaskResult(metrics, [], Headline(f"top-{task.k} accuracy", metrics["top_k"], {"chance": chance},
                                            validation=validation,
                                            baselines_validation={"chance": chance} if validation is not None else {}))
