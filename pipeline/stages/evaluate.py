"""The evaluate stage: every downstream task of a spec on its trained model (its own training's,
or an upstream spec's encoder), each next to its baselines computed the same way in the same
run. Writes artifacts/<name>/evaluate/ (pictures), metrics/<name>/evaluate.json and one MLflow
run tagged with the runs it builds on."""

from __future__ import annotations

import json
import time
from pathlib import Path

from pipeline import paths
from pipeline.distributed import is_secondary
from pipeline.errors import PipelineError
from pipeline.provenance import content_hash, git_state, machine
from pipeline.spec.experiment import ExperimentSpec, spec_hash, task_keys, training_hash
from pipeline.stages.common import log, setup_logging, write_json


def evaluate_code(kind: str) -> str:
    """The fingerprint of the code an evaluation of an encoder of this model kind depends on."""
    from pipeline.stages.dvc import code_paths, fingerprint

    return fingerprint(code_paths("evaluate", kind))


def evaluate(spec: ExperimentSpec, spec_path: Path | None = None) -> dict:
    setup_logging()
    if is_secondary():  # rank 0 of a DDP training evaluates; the others trained their share of it
        return {}
    import torch

    from pipeline import plugins, tracking
    from pipeline.data.datamodule import load_splits
    from pipeline.evaluators.context import Context
    from pipeline.formatting import figure
    from pipeline.upstream import encoder_source, lineage

    started = time.perf_counter()
    folder = spec_path.parent if spec_path else None
    source = encoder_source(spec, folder)
    builds_on = {"training": source} if spec.model is not None else {}
    builds_on.update(lineage(spec, folder))
    # `train_subset` limits training; downstream tasks train on `probe_subset` (default: all) examples.
    data = builds_on.get("data")
    # `eval_subset` (quick specs) scores them on fewer validation and test examples.
    splits = load_splits(spec.data.model_copy(update={"train_subset": spec.data.probe_subset}), spec.seed,
                         written=(data.source, data.folder) if data else None
                         ).with_eval_subset(spec.data.eval_subset, spec.seed)
    stale = {role: f.run_id for role, f in builds_on.items() if role != "training"}
    if spec.model is not None and source.upstream != stale:
        raise PipelineError(f"{spec.name} was trained from other runs of its upstream specs ({source.upstream}, now "
                            f"{stale}): retrain it with `pipeline pretrain specs/{spec.name}.yaml`")
    if splits.input_shape != source.input_shape:
        raise PipelineError(f"{spec.name}: the encoder of {source.name} takes examples of shape "
                            f"{list(source.input_shape)}, but the data holds {list(splits.input_shape)}")
    trained, initial = source.models()
    out = paths.artifacts_dir(spec.name) / "evaluate"
    out.mkdir(parents=True, exist_ok=True)
    device = "cuda" if torch.cuda.is_available() and spec.train.accelerator in ("auto", "gpu") else "cpu"

    with tracking.stage_run(spec, "evaluate", spec_path, upstream=builds_on) as run:
        log.info("evaluate %s: %d tasks on the encoder of %s (run %s); %d train / %d val / %d test examples; "
                 "MLflow run %s", spec.name, len(spec.downstream), source.name, source.run_id,
                 len(splits.train["input"]), len(splits.val["input"]), len(splits.test["input"]), run.run_id)
        context = Context(spec, splits, trained, initial, out, device, run)
        tasks = plugins.tasks()
        if any(tasks[task.kind].reads_features for task in spec.downstream):
            # Every feature set first, in this order, before any task draws random numbers (a
            # rate-coded spiking encoder draws its input spikes): the figures do not depend on
            # which tasks a spec lists, or in what order.
            for name in context.FEATURE_SETS:
                context.features(name)
        results, headlines, artifacts = {}, [], []
        for key, task in zip(task_keys(spec), spec.downstream, strict=True):
            task_started = time.perf_counter()
            outcome = tasks[task.kind].load()(task, context)
            results[key] = outcome.metrics
            artifacts += outcome.artifacts
            run.log_metrics({f"{key}/{name}": value for name, value in outcome.metrics.items()})
            if outcome.headline is not None:
                headlines.append({"task": key, **outcome.headline.as_dict()})  # in the spec's order
                unit = outcome.headline.unit
                baselines = ", ".join(f"{n} {figure(v, unit)}" for n, v in outcome.headline.baselines.items())
                log.info("  %-12s %s %s%s (%.0f s)", key, outcome.headline.label, figure(outcome.headline.value, unit),
                         f"; {baselines}" if baselines else "", time.perf_counter() - task_started)
        wall = time.perf_counter() - started
        trained_for = json.loads((source.folder / "metrics.json").read_text()) \
            if (source.folder / "metrics.json").is_file() else {}
        commit, dirty = git_state(paths.project_root())
        dataset = data.source if data else plugins.datasets()[spec.data.dataset]
        result = {"run_id": run.run_id, "pretrain_run_id": source.run_id, "encoder_spec": source.name,
                  "seed": spec.seed, "code": evaluate_code(source.spec.model.kind),
                  "git_commit": commit, "git_dirty": dirty == "true", "machine": machine(),
                  "dataset_sha256": content_hash({f.name: f.sha256 for f in dataset.files}),
                  "training_hash": training_hash(spec) if spec.model is not None else None,
                  "training_wall_time_s": trained_for.get("wall_time_s", 0.0) if spec.model is not None else 0.0,
                  "upstream": {role: {"spec": f.name, "run_id": f.run_id} for role, f in builds_on.items()},
                  "spec_hash": spec_hash(spec), "model": spec.model.kind if spec.model else source.spec.model.kind,
                  "dataset": data.source.name if data else spec.data.dataset, "wall_time_s": round(wall, 1),
                  "headlines": headlines, **results}
        metrics_path = paths.metrics_dir(spec.name) / "evaluate.json"
        write_json(metrics_path, result)
        run.log_metrics({"wall_time_s": result["wall_time_s"]})
        for path in (*artifacts, metrics_path):
            run.log_artifact(path)
    return result
