"""The continual family's report: its learners side by side (one table per scenario, best first),
and a figure of each learner's accuracy against the memory it keeps; for `pipeline report` and
its docs page, from the figures of every spec that is a continual learner."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline import paths
from pipeline.formatting import Section, spread, table, wall_per_seed
from pipeline.fsutil import write_atomic
from pipeline.models.continual import strategy_label

CONTINUAL_COLUMNS = ("scenario", "spec", "what", "average accuracy", "forgetting", "backward transfer",
                     "forward transfer", "memory kept", "time per seed", "seeds")
SCENARIOS = {"class_incremental": "class-incremental", "task_incremental": "task-incremental",
             "domain_incremental": "domain-incremental (permuted)"}


def _learner(name: str):
    """(`<scenario type>, <dataset> (<n> experiences)`, strategy spec, network) of a continual spec,
    read from specs/<name>.yaml; None when it is not one (or no longer loads)."""
    from pipeline.spec.load import SpecError, load

    try:
        spec = load(paths.project_root() / "specs" / f"{name}.yaml")
    except (SpecError, OSError):
        return None
    model = spec.model
    if model is None or getattr(model, "kind", None) != "continual":
        return None
    scenario = f"{SCENARIOS[model.scenario.type]}, {spec.data.dataset} ({model.scenario.experiences} experiences)"
    network = f"{spec.upstream['encoder']}'s encoder" if "encoder" in spec.upstream else "MLP"
    return scenario, model.strategy, network


def _scenario(name: str) -> str:
    """The scenario of a continual spec as the table groups it ("?" when it is not one)."""
    learner = _learner(name)
    return learner[0] if learner else "?"


def continual_table(results: list[dict]) -> str:
    """Continual learners side by side, one row per spec (its `figures`), grouped by scenario and
    best first: the figures of their accuracy matrices (mean +- std over seeds) and what each keeps."""
    found = []
    for result in results:
        figures_ = result.get("metrics", {}).get("continual")
        if figures_:
            found.append((_scenario(result["spec"]), -figures_["average_accuracy"]["mean"], result, figures_))
    lines = []
    for scenario, _, result, figures_ in sorted(found, key=lambda row: row[:2]):
        def cell(name: str, unit: str = "accuracy", figures_=figures_) -> str:
            stats = figures_.get(name)
            if stats is None:
                return "-"
            if unit == "points":
                text = f"{100 * stats['mean']:+.1f}"
                return text + (f" ± {100 * stats['std']:.1f}" if stats.get("std") is not None else "")
            return spread(stats, unit)

        samples = figures_.get("memory_samples", {}).get("mean", 0)
        size = figures_.get("memory_bytes", {}).get("mean", 0)
        memory = "-" if not size else (f"{samples:,.0f} samples, " if samples else "") + f"{size / 1e3:,.0f} kB"
        lines.append([scenario, f"`{result['spec']}`", result.get("description", ""),
                      f"**{cell('average_accuracy')}**", cell("forgetting", "points"),
                      cell("backward_transfer", "points"), cell("forward_transfer", "points"), memory,
                      f"{wall_per_seed(result['runs']) / 60:.1f} min", str(len(result["runs"]))])
    return table(lines, CONTINUAL_COLUMNS) if lines else "No continual results yet.\n"


MEMORY_FIGURE = "continual_memory.png"
"""The figure's file, in the folder the docs' figures go to (results/, beside what it plots)."""


def memory_panels(results: list[dict]) -> dict[str, dict]:
    """Per scenario: the learners that keep something, their average accuracy (mean, std over
    seeds) against the bytes kept, a line per strategy and network; the bounds of the scenario's
    MLP (plain joint and naive training, which keep nothing) as references."""
    panels: dict[str, dict] = {}
    for result in results:
        figures_ = result.get("metrics", {}).get("continual")
        learner = _learner(result["spec"])
        if not figures_ or learner is None:
            continue
        scenario, strategy, network = learner
        panel = panels.setdefault(scenario, {"series": {}, "references": {}})
        accuracy = figures_["average_accuracy"]
        size = figures_.get("memory_bytes", {}).get("mean", 0)
        if size:
            samples = figures_.get("memory_samples", {}).get("mean", 0)
            note = f"{samples:,.0f}" if samples else ""
            panel["series"].setdefault(f"{strategy_label(strategy)} ({network})", []).append(
                (size, accuracy["mean"], accuracy.get("std") or 0.0, note))
        elif network == "MLP" and strategy.name in ("joint", "naive") and not getattr(strategy, "contrast", None):
            label = f"{strategy.name} (MLP, keeps nothing)"
            panel["references"][label if label not in panel["references"] else f"{label}: {result['spec']}"] = \
                accuracy["mean"]
    return {name: {"series": dict(sorted(panel["series"].items())),
                   "references": dict(sorted(panel["references"].items()))}
            for name, panel in sorted(panels.items()) if panel["series"]}


def figure_digest(path: Path) -> str | None:
    """The digest a memory figure was drawn from (its PNG's Description), if it is there."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            found = image.text.get("Description", "")
    except (OSError, UnidentifiedImageError, AttributeError):
        return None
    return found.removeprefix("digest ") or None


def memory_figure(folder: Path, link: str, results: list[dict], check: bool) -> tuple[str, bool]:
    """(the page's lines for the accuracy-against-memory figure, whether the figure matches them).
    The lines carry the digest of what the figure plots, and so does the PNG: a changed result
    makes the page stale, and a figure not drawn from the page's data does not match. Unless
    `check`, the figure is drawn into `folder` where it does not match (removed when there is
    nothing to plot); the page links it as `link`/<file>."""
    import hashlib

    target = folder / MEMORY_FIGURE
    panels = memory_panels(results)
    if not panels:
        if not check:
            target.unlink(missing_ok=True)
        return "No continual learner with a memory published yet.\n", not target.exists()
    digest = hashlib.sha256(json.dumps(panels, sort_keys=True).encode()).hexdigest()[:12]
    current = figure_digest(target) == digest
    if not check and not current:
        from pipeline.models.continual.figures import accuracy_by_memory

        write_atomic(target, lambda tmp: accuracy_by_memory(
            panels, "Continual learners: average accuracy after the last experience against the memory kept "
                    "(mean, bars: std over seeds; numbers: samples kept)", tmp, note=f"digest {digest}"))
        current = True
    return (f"![Average accuracy against the memory kept, per scenario]({link}/{MEMORY_FIGURE})\n"
            f"<!-- plotted from results/continual_*.json, digest {digest} -->\n"), current


def sections(results: list[dict], figures: Path | None = None, link: str = "", check: bool = False) -> list[Section]:
    """The report hook (`Plugin.report`): the table of every continual learner among `results`,
    and, where `figures` names a folder, the memory figure drawn there."""
    learners = [result for result in results if result.get("metrics", {}).get("continual")]
    if not learners:
        return []
    found = [Section("Continual learners, side by side", continual_table(learners))]
    if figures is not None:
        lines, current = memory_figure(figures, link, learners, check)
        found.append(Section("Accuracy against the memory kept", lines, current))
    return found
