"""How sparse a layer's activity is: population sparsity (how few units carry each example) and
lifetime sparsity (how rarely each unit is active), Treves & Rolls' measure as Vinje & Gallant
(2000) normalise it: S = (1 - (mean a)^2 / mean(a^2)) / (1 - 1/n), 0 for activity spread evenly,
1 for one unit (or one example) carrying all of it."""

from __future__ import annotations

import numpy as np
import torch

from pipeline.evaluators.context import Context, Headline, TaskResult


def treves_rolls(activity: torch.Tensor, dim: int) -> torch.Tensor:
    """Sparsity of magnitudes along `dim` (units for population, examples for lifetime); NaN where
    everything is zero."""
    a = activity.abs().double()
    n = a.shape[dim]
    mean, mean_square = a.mean(dim=dim), (a ** 2).mean(dim=dim)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = mean ** 2 / mean_square
    return (1 - ratio) / (1 - 1 / n)


def measures(activity: torch.Tensor) -> dict[str, float]:
    """The four figures of activity [examples, units]."""
    population = treves_rolls(activity, dim=1)
    lifetime = treves_rolls(activity, dim=0)
    active = activity.abs().sum(dim=0) > 0
    return {"population_sparsity": float(torch.nanmean(population)),
            "lifetime_sparsity": float(torch.nanmean(lifetime[active])) if active.any() else float("nan"),
            "zero_fraction": float((activity == 0).double().mean()),
            "dead_units": float(1 - active.double().mean())}


def run(task, ctx: Context) -> TaskResult:
    metrics: dict[str, float] = {}
    pictures = []
    activities = {}
    for name, prefix in (("encoder", ""), ("random_encoder", "untrained_")):
        activity = ctx.features(name)["test"]
        if task.examples is not None:
            activity = activity[: task.examples]
        activities[name] = activity
        metrics.update({f"{prefix}{key}": value for key, value in measures(activity).items()})
    pictures.append(_picture(ctx, activities))
    return TaskResult(metrics, pictures, Headline(
        "population sparsity of the encoder's activity (0 dense, 1 one unit)", metrics["population_sparsity"],
        {"untrained": metrics["untrained_population_sparsity"]}, unit="sparsity"))


def _picture(ctx: Context, activities: dict[str, torch.Tensor]):
    """The activity of the first 100 test examples (units x examples), trained and untrained."""
    import matplotlib.pyplot as plt

    from pipeline import plots

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, (name, activity) in zip(axes, activities.items(), strict=True):
        shown = activity[:100].abs().T.numpy()
        ax.imshow(shown, aspect="auto", cmap="magma", interpolation="nearest")
        s = measures(activity)["population_sparsity"]
        ax.set_title(f"{'trained' if name == 'encoder' else 'untrained'}: population sparsity {s:.2f}", fontsize=10)
        ax.set_xlabel("test example")
        ax.set_ylabel("unit")
    return plots.save(fig, ctx.out / "activation_sparsity.png")
