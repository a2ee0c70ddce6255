"""The report: each evaluated spec's downstream tasks, one row per task with its headline figure
and the baselines computed beside it in the same run, then what each plugin's report hook adds
(its own comparison tables). Written to reports/summary.md from metrics/."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline import paths, plugins
from pipeline.aggregate import figures
from pipeline.distributed import is_secondary
from pipeline.errors import PipelineError
from pipeline.formatting import Section, baselines_text, spread, table, wall_per_seed
from pipeline.fsutil import write_atomic

COLUMNS = ("spec", "model", "dataset", "task", "result", "validation", "baselines (same run)", "seeds", "wall time",
           "MLflow run (evaluate)")

HEADER = ("Test-split figures of each spec's downstream tasks (mean +- standard deviation over seeds where it ran "
          "over several); each beside its baselines, computed in the same run the same way (the raw input; the "
          "same encoder untrained; the same network trained from scratch), and the same figure on the validation "
          "split, where settings are chosen.\n\n")


def rows(name: str, found: dict) -> list[list[str]]:
    runs = found["runs"]
    wall = wall_per_seed(runs)
    base = next((r for r in runs if r["name"] == name), runs[0])
    seeds = f"{len(runs)} ({', '.join(str(r['seed']) for r in runs)})"
    out = []
    for headline in found["headlines"]:
        unit = headline.get("unit", "accuracy")
        out.append([name, found.get("model", "?"), found.get("dataset", "?"), headline["task"],
                    f"{headline['label']}: **{spread(headline['value'], unit)}**",
                    spread(headline.get("validation"), unit), baselines_text(headline), seeds, f"{wall / 60:.1f} min",
                    base.get("evaluate_run_id", "-")])
    return out or [[name, found.get("model", "?"), found.get("dataset", "?"), "-",
                    "evaluated by an older version: rerun `pipeline evaluate`", "-", "-", seeds,
                    f"{wall / 60:.1f} min", base.get("evaluate_run_id", "-")]]


def references(datasets: set[str]) -> str:
    """Published results on the datasets in the table, for scale (not computed here)."""
    registered = plugins.datasets()
    found = [[name, r.model, f"{100 * r.accuracy:.0f}%", r.source]
             for name in sorted(datasets) if name in registered for r in registered[name].references]
    if not found:
        return ""
    return ("\nPublished reference figures on the same test splits (quoted, not measured here):\n\n"
            + table(found, ("dataset", "model", "test accuracy", "source")))


def _description(name: str) -> str:
    """The spec's description, where its file is in specs/."""
    from pipeline.spec.load import SpecError, load

    try:
        return load(paths.project_root() / "specs" / f"{name}.yaml").description
    except (SpecError, OSError):
        return name


def seed_variants(metrics_root: Path) -> set[str]:
    """Folders of the other seeds of a sweep (`<name>-seed<s>`): shown in their spec's row."""
    import re

    # A sweep's other seeds, and folders a narrower sweep left behind (<name>-seed<s> of a spec).
    names = {path.parent.name for path in metrics_root.glob("*-seed*/evaluate.json")
             if (found := re.fullmatch(r"(.+)-seed\d+", path.parent.name))
             and (metrics_root / found.group(1) / "evaluate.json").is_file()}
    for path in metrics_root.glob("*/seeds.json"):
        try:
            runs = json.loads(path.read_text()).get("runs", [])
        except (OSError, json.JSONDecodeError):
            continue
        names |= {run["name"] for run in runs if run["name"] != path.parent.name}
    return names


def plugin_sections(results: list[dict], figures: Path | None = None, link: str = "", check: bool = False,
                    only: str | None = None) -> list[Section]:
    """What each plugin's report hook (`Plugin.report`) makes of `results` (every plugin's, or the
    plugin named `only`): its own tables, and its figures where `figures` names their folder."""
    found = []
    for name, plugin in sorted(plugins.plugins().items()):
        if plugin.report and (only is None or name == only):
            found += plugins.resolve(plugin.report)(results, figures, link, check)
    return found


def report(names: list[str] | None = None) -> str:
    """reports/summary.md over every evaluated spec (and reports/<name>.md for each named one);
    prints the summary. Rank 0's alone in a DDP training's processes."""
    if is_secondary():
        return ""
    metrics_root = paths.project_root() / "metrics"
    variants = seed_variants(metrics_root)
    evaluated = sorted(p.parent.name for p in metrics_root.glob("*/evaluate.json") if p.parent.name not in variants)
    for name in names or []:
        if name not in evaluated:
            raise PipelineError(f"{name} has not been evaluated yet: run `pipeline evaluate specs/{name}.yaml`")
    by_spec, datasets, results = {}, {}, []
    for name in evaluated:
        found = figures(name, metrics_root)
        by_spec[name] = rows(name, found)
        datasets[name] = found.get("dataset", "")
        results.append({"spec": name, "description": _description(name), **found})
    all_rows = [row for name in evaluated for row in by_spec[name]]
    summary = "# Summary\n\n" + HEADER + (table(all_rows, COLUMNS) if all_rows else "No spec evaluated yet.\n")
    for section in plugin_sections(results):
        summary += f"\n## {section.title}\n\n{section.markdown}"
    summary += references(set(datasets.values()))
    reports = paths.reports_dir()
    write_atomic(reports / "summary.md", lambda tmp: tmp.write_text(summary))
    for name in names or []:
        text = f"# {name}\n\n" + HEADER + table(by_spec[name], COLUMNS) + references({datasets[name]})
        write_atomic(reports / f"{name}.md", lambda tmp, text=text: tmp.write_text(text))
    print(summary)
    return summary
