"""The committed figures: results/<spec>.json of each published spec (every figure with its spread
over seeds, validation figure and baselines, and per seed the commit, hashes, MLflow run ids, data
hash, wall times and machine): what the docs quote, and the results table made from them."""

from __future__ import annotations

from pathlib import Path

from pipeline import paths
from pipeline.aggregate import figures
from pipeline.errors import PipelineError
from pipeline.formatting import baselines_text, spread, table, wall_per_seed
from pipeline.fsutil import read_json
from pipeline.stages.common import log, write_json

RESULTS_DIR = "results"


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


RESULTS_COLUMNS = ("spec", "what", "task", "test", "validation", "baselines (test, same runs)", "seeds",
                  "time per seed", "commit")


def published(root: Path) -> list[dict]:
    """Every results/<spec>.json, by spec name."""
    return [read_json(path, f"rewrite it with `pipeline report --publish specs/{path.stem}.yaml`")
            for path in sorted((root / RESULTS_DIR).glob("*.json"))]


def results_table(results: list[dict]) -> str:
    """The results table: one row per spec and task, from published results alone."""
    lines = []
    for found in results:
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
    return table(lines, RESULTS_COLUMNS) if lines else "No results published yet.\n"
