"""The vokenization family's report: language models with and without vokens side by side, each
text task's probe accuracy and its paired difference from masked language modelling alone."""

from __future__ import annotations

from pathlib import Path

from pipeline import paths
from pipeline.formatting import Section, spread, table, wall_per_seed

VOKEN_TASKS = {"wordnet_supersense": "supersense (26 classes)", "grounded_facts": "grounded facts (true/false)"}
VOKEN_MODES = {"none": "MLM alone", "matched": "MLM + vokens", "random": "MLM + random vokens"}


def _voken_lm(name: str) -> tuple[str, str, dict[str, str]] | None:
    """(its `vokens` setting, its row's label, {task key: dataset}) of a voken_lm spec, read from
    specs/<name>.yaml."""
    from pipeline.models.voken import TextProbeSpec
    from pipeline.spec.experiment import task_keys
    from pipeline.spec.load import SpecError, load

    try:
        spec = load(paths.project_root() / "specs" / f"{name}.yaml")
    except (SpecError, OSError):
        return None
    if spec.model is None or spec.model.kind != "voken_lm":
        return None
    label = VOKEN_MODES[spec.model.vokens] + (f", weight {spec.model.voken_weight:g}"
                                              if spec.model.vokens != "none" and spec.model.voken_weight != 1 else "")
    return spec.model.vokens, label, {key: task.dataset for key, task in zip(task_keys(spec), spec.downstream,
                                                                             strict=True)
                                      if isinstance(task, TextProbeSpec)}


def voken_table(results: list[dict]) -> str:
    """Language models with and without vokens side by side: each text task's probe accuracy (mean
    +- std over seeds), and its difference from MLM alone seed by seed (the same seeds: paired)."""
    rows = []
    for result in results:
        found = _voken_lm(result["spec"])
        if found is not None:
            rows.append((list(VOKEN_MODES).index(found[0]), found[0], found[2], result, found[1]))
    rows.sort(key=lambda row: (row[0], row[3]["spec"]))
    baseline = next((row for row in rows if row[1] == "none"), None)

    def per_task(result: dict, tasks: dict[str, str]) -> dict[str, dict]:
        return {tasks[h["task"]]: h for h in result["headlines"] if h["task"] in tasks}

    reference = per_task(baseline[3], baseline[2]) if baseline else {}
    reference_seeds = baseline[3]["seeds"] if baseline else []
    lines = []
    for _, mode, tasks, result, label in rows:
        cells = []
        headlines = per_task(result, tasks)
        for dataset in VOKEN_TASKS:
            headline = headlines.get(dataset)
            if headline is None:
                cells += ["-", "-"]
                continue
            untrained = spread(headline["baselines"]["untrained"], "accuracy")
            cells.append(f"**{spread(headline['value'], 'accuracy')}** (untrained {untrained})")
            other = reference.get(dataset)
            if mode == "none" or other is None:
                cells.append("-")
                continue
            mine = dict(zip(result["seeds"], headline["value"]["values"], strict=True))
            theirs = dict(zip(reference_seeds, other["value"]["values"], strict=True))
            shared = sorted(set(mine) & set(theirs))
            differences = [100 * (mine[seed] - theirs[seed]) for seed in shared]
            if not differences:
                cells.append("-")
                continue
            mean = sum(differences) / len(differences)
            std = (sum((d - mean) ** 2 for d in differences) / (len(differences) - 1)) ** 0.5 \
                if len(differences) > 1 else None
            cells.append(f"{mean:+.1f}" + (f" ± {std:.1f}" if std is not None else "") + f" ({len(shared)} seeds)")
        lines.append([f"`{result['spec']}`", label, *cells,
                      f"{wall_per_seed(result['runs']) / 60:.1f} min", str(len(result["runs"]))])
    columns = ("spec", "language model", *(c for name in VOKEN_TASKS.values() for c in
                                           (f"{name}, test", "vs MLM alone, points")), "time per seed", "seeds")
    return table(lines, columns) if lines else "No voken results yet.\n"


def sections(results: list[dict], figures: Path | None = None, link: str = "", check: bool = False) -> list[Section]:
    """The report hook (`Plugin.report`): the voken table, where a language model is among `results`."""
    text = voken_table(results)
    return [Section("Language models with and without vokens", text)] if "No voken results" not in text else []
