"""The meta-learners' report: every spec scored by `few_shot` side by side, for `pipeline report`
and the family's docs page. Classification: the accuracy on meta-test episodes at each shot count
(mean ± standard deviation over seeds; one seed: ± its 95% interval over episodes) beside the
baselines computed on the same episodes. Functions: the query MSE after 1 and 10 steps beside the
network pretrained on all functions."""

from __future__ import annotations

from pathlib import Path

from pipeline.formatting import Section, spread, table

CLASS_COLUMNS = ("spec", "kind", "shots", "meta-learner", "from scratch", "nearest centroid (raw)",
                 "good embedding", "seeds")
FUNCTION_COLUMNS = ("spec", "K", "meta-learned, 1 step", "pretrained, 1 step", "meta-learned, 10 steps",
                    "pretrained, 10 steps", "seeds")


def _cell(metrics: dict, key: str, unit: str) -> str:
    stats = metrics.get(key)
    if stats is None:
        return "-"
    if stats.get("std") is None and f"{key}_ci95" in metrics:  # one seed: its interval over episodes
        interval = metrics[f"{key}_ci95"]["mean"]
        return f"{100 * stats['mean']:.1f} ± {100 * interval:.1f}% (95% CI)"
    return spread(stats, unit)


def _shots(metrics: dict, suffix: str) -> list[int]:
    return sorted({int(key.split("shot/")[0]) for key in metrics if key.endswith(suffix) and "shot/" in key})


def _rows(results: list[dict], suffix: str, row) -> list[list[str]]:
    """row(result, few_shot metrics, shots) for each spec scored by few_shot and each shot count
    with a metric ending in `suffix`."""
    rows = []
    for result in results:
        metrics = result.get("metrics", {}).get("few_shot")
        if metrics:
            rows += [row(result, metrics, shots) for shots in _shots(metrics, suffix)]
    return rows


def class_table(results: list[dict]) -> str:
    def row(result: dict, metrics: dict, shots: int) -> list[str]:
        key = f"{shots}shot"
        return [f"`{result['spec']}`", result.get("model", "-"), str(shots),
                f"**{_cell(metrics, f'{key}/accuracy', 'accuracy')}**",
                _cell(metrics, f"{key}/scratch", "accuracy"), _cell(metrics, f"{key}/centroid", "accuracy"),
                _cell(metrics, f"{key}/embedding", "accuracy"), str(len(result.get("runs", [])))]

    rows = _rows(results, "/accuracy", row)
    return table(rows, CLASS_COLUMNS) if rows else ""


def function_table(results: list[dict]) -> str:
    def row(result: dict, metrics: dict, shots: int) -> list[str]:
        return [f"`{result['spec']}`", str(shots),
                *(spread(metrics.get(f"{shots}shot/{name}_steps_{steps}"), "MSE")
                  for steps in (1, 10) for name in ("mse", "pretrained_mse")),
                str(len(result.get("runs", [])))]

    rows = _rows(results, "/mse_steps_1", row)
    return table(rows, FUNCTION_COLUMNS) if rows else ""


def sections(results: list[dict], figures: Path | None = None, link: str = "", check: bool = False) -> list[Section]:
    """The report hook (`Plugin.report`)."""
    found = []
    text = class_table(results)
    if text:
        found.append(Section("Few-shot accuracy on meta-test classes", "N-way episodes of classes meta-training "
                             "never saw, the baselines on the same episodes.\n\n" + text))
    text = function_table(results)
    if text:
        found.append(Section("Adapting to new functions", "Query MSE on new functions after gradient steps on K "
                             "points: the meta-learned start against a network pretrained on all training "
                             "functions, fine-tuned the same way.\n\n" + text))
    return found
