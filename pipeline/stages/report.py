"""The report: each evaluated spec's downstream tasks, one row per task with its headline figure
and the baselines computed beside it in the same run."""

from __future__ import annotations

from pipeline import paths
from pipeline.errors import PipelineError
from pipeline.fsutil import write_atomic
from pipeline.stages.common import read_json

COLUMNS = ("spec", "model", "dataset", "task", "result", "baselines (same run)", "wall time", "MLflow run (evaluate)")

HEADER = ("Test-split figures of each spec's downstream tasks; each beside its baselines, computed in the same run "
          "the same way (the raw input; the same encoder untrained; the same network trained from scratch).\n\n")


def figure(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.1f}%" if unit == "accuracy" else f"{value:.3g}{unit if unit == 'x' else ' ' + unit}"


def rows(name: str, evaluated: dict) -> list[list[str]]:
    wall = evaluated.get("wall_time_s", 0) + evaluated.get("training_wall_time_s", 0)
    out = []
    headlines = evaluated.get("headlines", [])
    if isinstance(headlines, dict):  # written before the headlines kept the spec's order
        headlines = [{"task": key, **value} for key, value in headlines.items()]
    for headline in headlines:
        key = headline["task"]
        unit = headline.get("unit", "accuracy")
        baselines = "; ".join(f"{n} {figure(v, unit)}" for n, v in headline.get("baselines", {}).items())
        out.append([name, evaluated.get("model", "?"), evaluated.get("dataset", "?"), key,
                    f"{headline['label']}: **{figure(headline['value'], unit)}**", baselines or "-",
                    f"{wall / 60:.1f} min", evaluated.get("run_id", "-")])
    return out or [[name, evaluated.get("model", "?"), evaluated.get("dataset", "?"), "-",
                    "evaluated by an older version: rerun `pipeline evaluate`", "-", f"{wall / 60:.1f} min",
                    evaluated.get("run_id", "-")]]


def table(lines: list[list[str]], columns: tuple[str, ...] = COLUMNS) -> str:
    text = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    text += ["| " + " | ".join(row) + " |" for row in lines]
    return "\n".join(text) + "\n"


def references(datasets: set[str]) -> str:
    """Published results on the datasets in the table, for scale (not computed here)."""
    from pipeline.data.registry import DATASETS

    found = [[name, r.model, f"{100 * r.accuracy:.0f}%", r.source]
             for name in sorted(datasets) if name in DATASETS for r in DATASETS[name].references]
    if not found:
        return ""
    return ("\nPublished reference figures on the same test splits (quoted, not measured here):\n\n"
            + table(found, ("dataset", "model", "test accuracy", "source")))


def report(names: list[str] | None = None) -> str:
    """reports/summary.md over every evaluated spec (and reports/<name>.md for each named one);
    prints the summary."""
    metrics_root = paths.project_root() / "metrics"
    evaluated = sorted(p.parent.name for p in metrics_root.glob("*/evaluate.json"))
    for name in names or []:
        if name not in evaluated:
            raise PipelineError(f"{name} has not been evaluated yet: run `pipeline evaluate specs/{name}.yaml`")
    by_spec, datasets = {}, {}
    for name in evaluated:
        folder = metrics_root / name
        ev = read_json(folder / "evaluate.json", f"run `pipeline evaluate specs/{name}.yaml` again")
        by_spec[name] = rows(name, ev)
        datasets[name] = ev.get("dataset", "")
    all_rows = [row for name in evaluated for row in by_spec[name]]
    summary = "# Summary\n\n" + HEADER + (table(all_rows) if all_rows else "No spec evaluated yet.\n")
    summary += references(set(datasets.values()))
    reports = paths.reports_dir()
    write_atomic(reports / "summary.md", lambda tmp: tmp.write_text(summary))
    for name in names or []:
        text = f"# {name}\n\n" + HEADER + table(by_spec[name]) + references({datasets[name]})
        write_atomic(reports / f"{name}.md", lambda tmp, text=text: tmp.write_text(text))
    print(summary)
    return summary
