"""A spec's figures over its seeds: each headline's mean and spread, of its validation figure and
baselines too, from the evaluate.json of each seed (what seeds.json and results/<spec>.json hold).
Pure functions of plain data and the files under metrics/."""

from __future__ import annotations

import math
from pathlib import Path

from pipeline.fsutil import read_json


def _stats(values: list[float]) -> dict:
    """Mean and sample standard deviation (n - 1; None for one value) of a figure over seeds."""
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else None
    return {"mean": mean, "std": std, "values": values}


def aggregate(headlines_per_seed: list[list[dict]]) -> list[dict]:
    """Per task (in the spec's order), the spread of its headline value, validation figure and
    baselines over the seeds."""
    out = []
    for task_headlines in zip(*headlines_per_seed, strict=True):
        first = task_headlines[0]
        validations = [h.get("validation") for h in task_headlines]
        entry = {"task": first["task"], "label": first["label"], "unit": first.get("unit", "accuracy"),
                 "seeds": len(task_headlines), "value": _stats([h["value"] for h in task_headlines]),
                 "validation": _stats(validations) if None not in validations else None,
                 "baselines": {name: _stats([h["baselines"][name] for h in task_headlines])
                               for name in first.get("baselines", {})},
                 "baselines_validation": {
                     name: _stats([h["baselines_validation"][name] for h in task_headlines])
                     for name in first.get("baselines_validation") or {}
                     if all(name in (h.get("baselines_validation") or {}) for h in task_headlines)}}
        out.append(entry)
    return out


def summarise_evaluations(name: str, evaluations: list[tuple[int, str, dict]]) -> dict:
    """seeds.json of spec `name` from (seed, output name, evaluate.json) of each seed."""
    runs = [{"seed": seed, "name": run, "evaluate_run_id": ev.get("run_id"),
             "pretrain_run_id": ev.get("pretrain_run_id"),
             "training_wall_time_s": ev.get("training_wall_time_s", 0.0), "wall_time_s": ev.get("wall_time_s", 0.0),
             "git_commit": ev.get("git_commit"), "git_dirty": ev.get("git_dirty"), "spec_hash": ev.get("spec_hash"),
             "training_hash": ev.get("training_hash"), "dataset_sha256": ev.get("dataset_sha256"),
             "upstream": ev.get("upstream", {}), "machine": ev.get("machine")}
            for seed, run, ev in evaluations]
    base = next((r for r in runs if r["name"] == name), runs[0])
    return {"spec": name, "spec_hash": base["spec_hash"], "seeds": [seed for seed, _, _ in evaluations],
            "runs": runs, "headlines": aggregate([ev["headlines"] for _, _, ev in evaluations]),
            "metrics": task_metrics([ev for _, _, ev in evaluations])}


def task_metrics(evaluations: list[dict]) -> dict[str, dict[str, dict]]:
    """Every number each downstream task reported (spikes, energy, per-fraction accuracies, ...),
    its mean and spread over the seeds: what the README's prose may quote besides the headlines."""
    out: dict[str, dict[str, dict]] = {}
    for headline in evaluations[0].get("headlines", []):
        task = headline["task"]
        names = [key for key, value in evaluations[0].get(task, {}).items()
                 if isinstance(value, (int, float)) and not isinstance(value, bool)]
        found = {key: _stats([float(ev[task][key]) for ev in evaluations])
                 for key in names if all(isinstance(ev.get(task, {}).get(key), (int, float)) for ev in evaluations)}
        if found:
            out[task] = found
    return out


def figures(name: str, metrics_root: Path) -> dict:
    """A spec's figures as `summarise_evaluations` makes them: over the seeds of its
    seeds.json when that sweep includes the spec's current evaluation (each seed's evaluate.json
    read again where it is still the one the sweep ran), else from its evaluate.json alone."""
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
