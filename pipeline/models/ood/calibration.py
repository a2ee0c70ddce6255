"""The `calibration` task: ECE, NLL, Brier and accuracy of the classifier's predictive distribution
on the test split, with a reliability diagram, beside the same predictions temperature-scaled (T
fitted on the validation split's NLL)."""

from __future__ import annotations

import numpy as np
import torch

from pipeline import plots
from pipeline.evaluators.context import Context, Headline, TaskResult
from pipeline.models.ood import outputs
from pipeline.models.ood import scores as S


def figures(log_probs: torch.Tensor, labels: torch.Tensor, bins: int) -> tuple[dict[str, float], S.Reliability]:
    probs = log_probs.exp()
    table = S.reliability(probs, labels, bins)
    return {"ece": table.ece, "nll": S.nll(log_probs, labels), "brier": S.brier(probs, labels),
            "accuracy": (log_probs.argmax(dim=1) == labels).double().mean().item()}, table


def diagram(tables: dict[str, S.Reliability], title: str, path):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(tables), figsize=(4.2 * len(tables), 4.2), squeeze=False)
    for ax, (name, table) in zip(axes[0], tables.items(), strict=True):
        centres = (table.edges[:-1] + table.edges[1:]) / 2
        width = table.edges[1] - table.edges[0]
        filled = table.counts > 0
        ax.bar(centres[filled], table.accuracy[filled], width * 0.95, color="tab:blue", label="accuracy")
        ax.bar(centres[filled], (table.confidence - table.accuracy)[filled], width * 0.95,
               bottom=table.accuracy[filled], color="tab:red", alpha=0.35, label="gap to confidence")
        ax.plot([0, 1], [0, 1], "k--", lw=1)
        shares = table.counts / max(table.counts.sum(), 1)
        ax.step(table.edges, np.append(shares, shares[-1]), where="post", color="grey", lw=1, label="share of examples")
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="accuracy", title=f"{name}: ECE {table.ece:.2%}")
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(title, fontsize=10)
    return plots.save(fig, path)


def run(task, ctx: Context) -> TaskResult:
    test, labels = outputs.of_split(ctx, "test")
    metrics, table = figures(test["log_probs"], labels, task.bins)
    tables = {"as trained": table}
    baselines, validation, baselines_validation = {}, None, {}
    if ctx.has_validation:  # temperature fitted on validation, the test split scored once
        val, val_labels = outputs.of_split(ctx, "val")
        temperature = S.fit_temperature(val["log_probs"], val_labels)
        scaled, tables["temperature scaled"] = figures(S.scaled(test["log_probs"], temperature), labels, task.bins)
        metrics.update({f"{key}_temperature": value for key, value in scaled.items()})
        metrics["temperature"] = temperature
        val_metrics, _ = figures(val["log_probs"], val_labels, task.bins)
        metrics.update({f"{key}_val": value for key, value in val_metrics.items()})
        validation = val_metrics["ece"]
        baselines = {"temperature scaled": scaled["ece"]}
        baselines_validation = {"temperature scaled": figures(S.scaled(val["log_probs"], temperature), val_labels,
                                                              task.bins)[0]["ece"]}
    picture = diagram(tables, f"{ctx.spec.name}: reliability on the test split", ctx.out / "reliability.png")
    return TaskResult(metrics, [picture], Headline(f"ECE ({task.bins} bins)", metrics["ece"], baselines, unit="ECE",
                                                   validation=validation, baselines_validation=baselines_validation))
