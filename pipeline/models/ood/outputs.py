"""What the OOD tasks read of any classifier: its logits, its predictive log-probabilities and its
own OOD score where it has one, over a split or an OOD family, computed once per evaluation and
shared between the tasks."""

from __future__ import annotations

import numpy as np
import torch

from pipeline.data.datamodule import model_input
from pipeline.errors import PipelineError

BATCH = 512


@torch.no_grad()
def batched(model, inputs: torch.Tensor, device: str | torch.device | None = None) -> dict[str, torch.Tensor]:
    """Over `inputs` (stored form) in batches, back on the CPU: the model's `predictive` where it has
    one (`logits`, `log_probs`, and `own`); any other classifier's logits (`classify`) and their
    log-softmax."""
    device = device or next(model.parameters()).device
    parts = []
    for start in range(0, len(inputs), BATCH):
        chunk = model_input(inputs[start:start + BATCH]).to(device)
        if hasattr(model, "predictive"):
            out = model.predictive(chunk)
        else:
            logits = model.classify(chunk)
            out = {"logits": logits, "log_probs": torch.log_softmax(logits.double(), dim=1)}
        parts.append({key: value.detach().double().cpu() for key, value in out.items()})
    return {key: torch.cat([part[key] for part in parts]) for key in parts[0]}


def limited(count: int, limit: int | None, seed: int, name: str) -> torch.Tensor | None:
    """Indices of at most `limit` of `count` examples (a seeded choice, in order); None for all."""
    if limit is None or count <= limit:
        return None
    rng = np.random.default_rng([seed, *name.encode()])
    return torch.from_numpy(np.sort(rng.choice(count, limit, replace=False)))


def of_split(ctx, split: str, limit: int | None = None) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """(outputs, labels) of the spec's own split."""

    def compute():
        inputs, labels = ctx.split(split)
        keep = limited(len(inputs), limit, ctx.spec.seed, split)
        if keep is not None:
            inputs, labels = inputs[keep], labels[keep]
        model = ctx.trained.eval().to(ctx.device)
        return batched(model, inputs, ctx.device), labels

    return ctx.cached(f"ood/{split}/{limit}", compute)


def of_family(ctx, name: str, limit: int | None = None) -> dict[str, torch.Tensor]:
    """Outputs on an OOD family's test split, which must hold inputs of the spec's data's shape."""
    from pipeline import plugins
    from pipeline.data.fetch import require_dataset

    def compute():
        source = plugins.datasets()[name]
        inputs = torch.from_numpy(np.asarray(source.load_reader()(require_dataset(source)).test["input"]))
        if tuple(inputs.shape[1:]) != tuple(ctx.splits.input_shape):
            raise PipelineError(f"ood_detection: {name} holds inputs {list(inputs.shape[1:])}, the spec's data "
                                f"{list(ctx.splits.input_shape)}; list OOD families of the data's shape "
                                "(`pipeline datasets` lists them)")
        keep = limited(len(inputs), limit, ctx.spec.seed, name)
        if keep is not None:
            inputs = inputs[keep]
        return batched(ctx.trained.eval().to(ctx.device), inputs, ctx.device)

    return ctx.cached(f"ood/family/{name}/{limit}", compute)
