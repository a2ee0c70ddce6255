"""The `ood_detection` task: each score's AUROC, AUPR and FPR95 between the in-distribution test
split and each OOD family's test split, their means over the families, and score histograms."""

from __future__ import annotations

import numpy as np
import torch

from pipeline import plots
from pipeline.evaluators.context import Context, Headline, TaskResult
from pipeline.models.ood import outputs
from pipeline.models.ood import scores as S

SCORES = ("msp", "max_logit", "energy")
TITLES = {"msp": "max softmax", "max_logit": "max logit", "energy": "energy", "own": "the method's own"}


def scored(out: dict[str, torch.Tensor], temperature: float) -> dict[str, np.ndarray]:
    """Each score of a set of outputs (higher = in-distribution)."""
    logits = out["logits"]
    values = {"msp": torch.softmax(logits, dim=1).max(dim=1).values, "max_logit": logits.max(dim=1).values,
              "energy": -S.energy(logits, temperature)}
    if "own" in out:
        values["own"] = out["own"]
    return {name: value.numpy() for name, value in values.items()}


def histograms(inside: dict[str, np.ndarray], families: dict[str, dict[str, np.ndarray]], title: str, path):
    import matplotlib.pyplot as plt

    names = list(inside)
    fig, axes = plt.subplots(len(names), len(families), figsize=(2.8 * len(families), 2.2 * len(names)),
                             squeeze=False)
    for row, name in enumerate(names):
        for col, (family, values) in enumerate(families.items()):
            ax = axes[row, col]
            both = np.concatenate([inside[name], values[name]])
            edges = np.linspace(both.min(), both.max(), 41) if both.max() > both.min() else 41
            ax.hist(inside[name], edges, density=True, alpha=0.55, label="in-distribution")
            ax.hist(values[name], edges, density=True, alpha=0.55, label=family)
            ax.tick_params(labelsize=6)
            if row == 0:
                ax.set_title(family, fontsize=8)
            if col == 0:
                ax.set_ylabel(f"{TITLES[name]} score", fontsize=8)
    axes[0, 0].legend(fontsize=6)
    fig.suptitle(title, fontsize=10)
    return plots.save(fig, path, dpi=90)


def run(task, ctx: Context) -> TaskResult:
    inside = scored(outputs.of_split(ctx, "test", task.max_examples)[0], task.temperature)
    families = {name: scored(outputs.of_family(ctx, name, task.max_examples), task.temperature)
                for name in task.datasets()}
    metrics: dict[str, float] = {}
    for family, values in families.items():
        for name in inside:
            for key, value in S.detection(inside[name], values[name]).items():
                metrics[f"{family}/{name}/{key}"] = value
    for name in inside:
        for key in ("auroc", "aupr", "fpr95"):
            metrics[f"mean/{name}/{key}"] = float(np.mean([metrics[f"{f}/{name}/{key}"] for f in families]))
    picture = histograms(inside, families, f"{ctx.spec.name}: scores, in-distribution test split against each OOD "
                                           "family", ctx.out / "ood_scores.png")
    best = "own" if "own" in inside else "energy"
    baselines = {TITLES[name]: metrics[f"mean/{name}/auroc"] for name in SCORES if name != best}
    return TaskResult(metrics, [picture], Headline(f"mean AUROC over {len(families)} OOD families, "
                                                   f"{TITLES[best]} score", metrics[f"mean/{best}/auroc"], baselines))
