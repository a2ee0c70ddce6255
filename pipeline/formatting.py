"""How figures are written in reports, tables and logs: '90.4 ± 0.3%', '0.0123 NRMSE ± 0.0021',
'12,288 synapses'; Markdown tables. Pure functions of plain data."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Section:
    """A part of a report or docs page that a plugin contributes (`Plugin.report`): a heading, its
    Markdown, and whether the figures it links are current (`pipeline docs --check`)."""

    title: str
    markdown: str
    current: bool = True


COUNTS = ("synapses", "correct")
"""Units of whole counts: shown as integers ('12,288 synapses'), not to 3 significant digits."""

STD_FORMATS = {"NRMSE": ".2g", "RMSE": ".2g", "ECE": ".2g", **{unit: ",.0f" for unit in COUNTS}}
"""How a spread over seeds is written where two decimals would blur it: errors well below 1
('0.0123 NRMSE ± 0.0021', RMSE likewise), counts; two decimals otherwise."""


def figure(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit in COUNTS:
        return f"{value:,.0f} {unit}"
    return f"{100 * value:.1f}%" if unit == "accuracy" else f"{value:.3g}{unit if unit == 'x' else ' ' + unit}"


def spread(stats: dict | None, unit: str) -> str:
    """'90.6%' for one seed, '90.4 ± 0.3%' over several."""
    if stats is None:
        return "-"
    if stats.get("std") is None:
        return figure(stats["mean"], unit)
    if unit == "accuracy":
        return f"{100 * stats['mean']:.1f} ± {100 * stats['std']:.1f}%"
    return f"{figure(stats['mean'], unit)} ± {stats['std']:{STD_FORMATS.get(unit, '.2f')}}"


def wall_per_seed(runs: list[dict]) -> float:
    """Training plus evaluation, in seconds, averaged over a sweep's runs."""
    return sum(r.get("wall_time_s", 0) + r.get("training_wall_time_s", 0) for r in runs) / max(len(runs), 1)


def baselines_text(headline: dict) -> str:
    unit = headline.get("unit", "accuracy")
    return "; ".join(f"{n} {spread(v, unit)}" for n, v in headline.get("baselines", {}).items()) or "-"


def table(lines: list[list[str]], columns: tuple[str, ...]) -> str:
    text = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    text += ["| " + " | ".join(row) + " |" for row in lines]
    return "\n".join(text) + "\n"
