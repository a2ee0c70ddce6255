"""The report: each evaluated spec's downstream tasks, one row per task with its headline figure
and the baselines computed beside it in the same run."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline import paths
from pipeline.errors import PipelineError
from pipeline.fsutil import write_atomic
from pipeline.stages.common import log, read_json, write_json

COLUMNS = ("spec", "model", "dataset", "task", "result", "validation", "baselines (same run)", "seeds", "wall time",
           "MLflow run (evaluate)")

HEADER = ("Test-split figures of each spec's downstream tasks (mean +- standard deviation over seeds where it ran "
          "over several); each beside its baselines, computed in the same run the same way (the raw input; the "
          "same encoder untrained; the same network trained from scratch), and the same figure on the validation "
          "split, where settings are chosen.\n\n")


COUNTS = ("synapses",)
"""Units of whole counts: shown as integers ('12,288 synapses'), not to 3 significant digits."""

STD_FORMATS = {"NRMSE": ".2g", **{unit: ",.0f" for unit in COUNTS}}
"""How a spread over seeds is written where two decimals would blur it: errors well below 1
('0.0123 NRMSE ± 0.0021'), counts; two decimals otherwise."""


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


def figures(name: str, metrics_root: Path) -> dict:
    """A spec's figures as `seeds.summarise_evaluations` makes them: over the seeds of its
    seeds.json when that sweep includes the spec's current evaluation (each seed's evaluate.json
    read again where it is still the one the sweep ran), else from its evaluate.json alone."""
    from pipeline.stages.seeds import summarise_evaluations

    def read(folder: str) -> dict:
        evaluated = read_json(metrics_root / folder / "evaluate.json",
                              f"run `pipeline evaluate specs/{name}.yaml` again")
        if isinstance(evaluated.get("headlines"), dict):  # written before the headlines kept the spec's order
            evaluated["headlines"] = [{"task": key, **value} for key, value in evaluated["headlines"].items()]
        return evaluated

    evaluated = read(name)
    kind = {"model": evaluated.get("model", "?"), "dataset": evaluated.get("dataset", "?")}
    sweep_path = metrics_root / name / "seeds.json"
    if sweep_path.is_file():
        sweep = read_json(sweep_path, f"run `pipeline run specs/{name}.yaml --seeds ...` again")
        runs = sweep.get("runs", [])
        if any(run["evaluate_run_id"] == evaluated.get("run_id") for run in runs):
            each = [(run["seed"], run["name"], evaluated if run["name"] == name else read(run["name"])) for run in runs
                    if (metrics_root / run["name"] / "evaluate.json").is_file()]
            if [ev.get("run_id") for _, _, ev in each] == [run["evaluate_run_id"] for run in runs]:
                return {**summarise_evaluations(name, each), **kind}
            return {**sweep, **kind}
    return {**summarise_evaluations(name, [(evaluated.get("seed", 0), name, evaluated)]), **kind}


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


def _description(name: str) -> str:
    """The spec's description (`<strategy>, <scenario>` for a continual learner), where its file is
    in specs/."""
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


def report(names: list[str] | None = None) -> str:
    """reports/summary.md over every evaluated spec (and reports/<name>.md for each named one);
    prints the summary."""
    metrics_root = paths.project_root() / "metrics"
    variants = seed_variants(metrics_root)
    evaluated = sorted(p.parent.name for p in metrics_root.glob("*/evaluate.json") if p.parent.name not in variants)
    for name in names or []:
        if name not in evaluated:
            raise PipelineError(f"{name} has not been evaluated yet: run `pipeline evaluate specs/{name}.yaml`")
    by_spec, datasets = {}, {}
    continual = []
    for name in evaluated:
        found = figures(name, metrics_root)
        by_spec[name] = rows(name, found)
        datasets[name] = found.get("dataset", "")
        if "continual" in found.get("metrics", {}):
            continual.append({"spec": name, "description": _description(name), **found})
    all_rows = [row for name in evaluated for row in by_spec[name]]
    summary = "# Summary\n\n" + HEADER + (table(all_rows) if all_rows else "No spec evaluated yet.\n")
    if continual:
        summary += "\n## Continual learners, side by side\n\n" + continual_table(continual)
    summary += references(set(datasets.values()))
    reports = paths.reports_dir()
    write_atomic(reports / "summary.md", lambda tmp: tmp.write_text(summary))
    for name in names or []:
        text = f"# {name}\n\n" + HEADER + table(by_spec[name]) + references({datasets[name]})
        write_atomic(reports / f"{name}.md", lambda tmp, text=text: tmp.write_text(text))
    print(summary)
    return summary


# ------------------------------------------------------------------ committed results, README table

RESULTS_DIR = "results"
BEGIN = "<!-- results table: written by `pipeline report --readme` from results/*.json; do not edit by hand -->"
END = "<!-- end of results table -->"


def training_provenance(runs: list[dict], uri: str) -> None:
    """Each run's training commit and wall time, from its MLflow training run (in place): the
    evaluation records its own commit; the encoder it read may have been trained at another."""
    import mlflow
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    for run in runs:
        if not run.get("pretrain_run_id"):
            continue
        try:
            found = client.get_run(run["pretrain_run_id"]).data
        except mlflow.exceptions.MlflowException:
            continue
        run["training_git_commit"] = found.tags.get("git_commit")
        run["training_git_dirty"] = found.tags.get("git_dirty") == "true"
        if not run.get("training_wall_time_s") and "wall_time_s" in found.metrics and \
                run.get("upstream", {}).get("training"):
            run["training_wall_time_s"] = found.metrics["wall_time_s"]


def publish(names: list[str], descriptions: dict[str, str], uri: str | None = None) -> list[Path]:
    """results/<name>.json for each named spec (committed: what the README quotes): every figure
    with its spread, validation figure and baselines, and per seed the commit, spec and training
    hashes, MLflow run ids, the dataset's content hash, wall times and the machine."""
    metrics_root = paths.project_root() / "metrics"
    written = []
    for name in names:
        if not (metrics_root / name / "evaluate.json").is_file():
            raise PipelineError(f"{name} has not been evaluated yet: run `pipeline run specs/{name}.yaml` first")
        found = figures(name, metrics_root)
        if uri:
            training_provenance(found["runs"], uri)
        dirty = [run["name"] for run in found["runs"] if run.get("git_dirty") or run.get("training_git_dirty")]
        if dirty:
            log.warning("publish %s: %s ran on uncommitted changes; commit and rerun for a traceable figure",
                        name, ", ".join(dirty))
        payload = {"spec": name, "description": descriptions.get(name, ""), **found}
        target = paths.project_root() / RESULTS_DIR / f"{name}.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        write_json(target, payload)
        written.append(target)
    return written


README_COLUMNS = ("spec", "what", "task", "test", "validation", "baselines (test, same runs)", "seeds",
                  "time per seed", "commit")


def readme_table(root: Path) -> str:
    """The README's results table: one row per spec and task, from results/*.json alone."""
    lines = []
    for path in sorted((root / RESULTS_DIR).glob("*.json")):
        found = read_json(path, f"rewrite it with `pipeline report --publish specs/{path.stem}.yaml`")
        runs = found["runs"]
        wall = wall_per_seed(runs)
        def short(commit: str | None, dirty: bool | None) -> str:
            return (commit or "unknown")[:7] + ("+" if dirty else "")

        trained = sorted({short(r.get("training_git_commit"), r.get("training_git_dirty")) for r in runs
                          if r.get("training_git_commit")})
        evaluated = sorted({short(r.get("git_commit"), r.get("git_dirty")) for r in runs})
        commits = evaluated if not trained or trained == evaluated else \
            [f"trained {', '.join(trained)}; evaluated {', '.join(evaluated)}"]
        gpus = sorted({r["machine"]["gpu"] for r in runs if (r.get("machine") or {}).get("gpu")})
        time = f"{wall / 60:.1f} min" + (f" ({', '.join(gpus)})" if gpus else "")
        for headline in found["headlines"]:
            unit = headline.get("unit", "accuracy")
            lines.append([f"`{found['spec']}`", found.get("description", ""), headline["label"],
                          f"**{spread(headline['value'], unit)}**", spread(headline.get("validation"), unit),
                          baselines_text(headline), str(len(runs)), time, ", ".join(commits)])
    return table(lines, README_COLUMNS) if lines else "No results published yet.\n"


CONTINUAL_BEGIN = ("<!-- continual table: written by `pipeline report --readme` from results/continual_*.json; do not "
                   "edit by hand -->")
CONTINUAL_END = "<!-- end of continual table -->"
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


MEMORY_BEGIN = ("<!-- continual memory figure: written by `pipeline report --readme` from results/continual_*.json; do "
                "not edit by hand -->")
MEMORY_END = "<!-- end of continual memory figure -->"
MEMORY_FIGURE = "results/continual_memory.png"


def memory_panels(results: list[dict]) -> dict[str, dict]:
    """Per scenario: the learners that keep something, their average accuracy (mean, std over
    seeds) against the bytes kept, a line per strategy and network; the bounds of the scenario's
    MLP (plain joint and naive training, which keep nothing) as references."""
    from pipeline.models.continual import strategy_label

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


def memory_figure(root: Path, results: list[dict], check: bool) -> tuple[str, bool]:
    """(the README's lines for the accuracy-against-memory figure, whether the figure matches
    them). The lines carry the digest of what the figure plots, and so does the PNG: a changed
    result makes the README stale, and a figure not drawn from the README's data does not match.
    Unless `check`, the figure is drawn where it does not match (removed when there is nothing to
    plot)."""
    import hashlib

    target = root / MEMORY_FIGURE
    panels = memory_panels(results)
    if not panels:
        if not check:
            target.unlink(missing_ok=True)
        return "No continual learner with a memory published yet.\n", not target.exists()
    digest = hashlib.sha256(json.dumps(panels, sort_keys=True).encode()).hexdigest()[:12]
    current = figure_digest(target) == digest
    if not check and not current:
        from pipeline.plots import accuracy_by_memory

        write_atomic(target, lambda tmp: accuracy_by_memory(
            panels, "Continual learners: average accuracy after the last experience against the memory kept "
                    "(mean, bars: std over seeds; numbers: samples kept)", tmp, note=f"digest {digest}"))
        current = True
    return (f"![Average accuracy against the memory kept, per scenario]({MEMORY_FIGURE})\n"
            f"<!-- plotted from results/continual_*.json, digest {digest} -->\n"), current


def published_continual(root: Path) -> list[dict]:
    return [read_json(path, f"rewrite it with `pipeline report --publish specs/{path.stem}.yaml`")
            for path in sorted((root / RESULTS_DIR).glob("continual_*.json"))]


VOKEN_BEGIN = ("<!-- voken table: written by `pipeline report --readme` from results/voken_lm_*.json; do not edit "
               "by hand -->")
VOKEN_END = "<!-- end of voken table -->"
VOKEN_TASKS = {"wordnet_supersense": "supersense (26 classes)", "grounded_facts": "grounded facts (true/false)"}
VOKEN_MODES = {"none": "MLM alone", "matched": "MLM + vokens", "random": "MLM + random vokens"}


def _voken_lm(name: str) -> tuple[str, str, dict[str, str]] | None:
    """(its `vokens` setting, its row's label, {task key: dataset}) of a voken_lm spec, read from
    specs/<name>.yaml."""
    from pipeline.evaluators import TextProbeSpec
    from pipeline.spec.load import SpecError, load
    from pipeline.stages.evaluate import task_keys

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


def published_voken(root: Path) -> list[dict]:
    return [read_json(path, f"rewrite it with `pipeline report --publish specs/{path.stem}.yaml`")
            for path in sorted((root / RESULTS_DIR).glob("voken_lm_*.json"))]


def _between(text: str, begin: str, end: str, body: str, target: Path) -> str:
    if begin not in text or end not in text:
        raise PipelineError(f"{target} has no table markers: put the lines\n{begin}\n{end}\nwhere the table goes, then "
                            "run `pipeline report --readme`")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    return head + begin + "\n" + body + end + tail


def readme(check: bool = False) -> bool:
    """Rewrite the README's tables (every result; the continual learners side by side) and its
    figure of the continual learners' accuracy against their memory, from results/*.json (with
    `check`: only say whether they are current)."""
    root = paths.project_root()
    target = root / "README.md"
    text = target.read_text()
    new = _between(text, BEGIN, END, readme_table(root), target)
    continual = published_continual(root) if CONTINUAL_BEGIN in text or MEMORY_BEGIN in text else []
    if CONTINUAL_BEGIN in text:
        new = _between(new, CONTINUAL_BEGIN, CONTINUAL_END, continual_table(continual), target)
    if MEMORY_BEGIN in text:
        lines, figure_current = memory_figure(root, continual, check)
        new = _between(new, MEMORY_BEGIN, MEMORY_END, lines, target)
        if check and not figure_current:
            return False
    if VOKEN_BEGIN in text:
        new = _between(new, VOKEN_BEGIN, VOKEN_END, voken_table(published_voken(root)), target)
    if check:
        return new == text
    write_atomic(target, lambda tmp: tmp.write_text(new))
    return True
