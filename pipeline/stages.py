"""The stages of a spec's chain. Each reads the files the earlier stage wrote, writes its own
under artifacts/<name>/<stage>/ and metrics/<name>/<stage>.json, and logs one MLflow run."""

from __future__ import annotations

import contextlib
import json
import logging
import pickle
import shutil
import time
import warnings
from pathlib import Path

from pipeline import paths
from pipeline.errors import PipelineError
from pipeline.fsutil import is_disk_full, save_torch_atomic, write_atomic
from pipeline.spec.experiment import ExperimentSpec, spec_hash
from pipeline.spec.load import dump

log = logging.getLogger("pipeline")


def _write_json(path: Path, payload: dict) -> Path:
    text = json.dumps(payload, indent=2, sort_keys=True) + "\n"
    return write_atomic(path, lambda tmp: tmp.write_text(text))


def _read_json(path: Path, hint: str) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise PipelineError(f"{path} is missing: {hint}") from None
    except (OSError, json.JSONDecodeError) as err:
        raise PipelineError(f"{path} is unreadable ({err}): {hint}") from None


def _setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # Lightning's advertisement for its hosted logger, printed on every fit; we log to MLflow.
    logging.getLogger("pytorch_lightning.utilities.rank_zero").addFilter(
        lambda record: "litlogger" not in record.getMessage()
    )
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")


# ---------------------------------------------------------------- fetch


def fetch(spec: ExperimentSpec) -> Path:
    from pipeline.data.fetch import fetch_dataset
    from pipeline.data.registry import DATASETS

    return fetch_dataset(DATASETS[spec.data.dataset])


# ---------------------------------------------------------------- pretrain


def _build_model(spec: ExperimentSpec, input_shape: tuple[int, ...], num_classes: int):
    from pipeline.models import REGISTRY

    return REGISTRY[spec.model.kind].load_class()(spec.model, spec.train, input_shape, num_classes)


def build_trainer(spec: ExperimentSpec, **overrides):
    """A Lightning Trainer configured by the spec's `train` section."""
    import pytorch_lightning as pl

    from pipeline.callbacks import AtomicCheckpointIO

    t = spec.train
    options = dict(
        max_epochs=t.max_epochs,
        limit_train_batches=t.limit_train_batches,
        accelerator=t.accelerator,
        devices=t.devices,
        strategy=t.strategy,
        num_nodes=t.num_nodes,
        precision=t.precision,
        # "warn": deterministic algorithms wherever they exist (all of them on CPU), without
        # failing on the few CUDA kernels that have none.
        deterministic="warn" if t.deterministic else False,
        log_every_n_steps=t.log_every_n_steps,
        enable_model_summary=False,
        plugins=[AtomicCheckpointIO()],
    )
    options.update(overrides)
    return pl.Trainer(**options)


def _checkpointing(spec: ExperimentSpec, folder: Path):
    """Checkpoints every N steps or every epoch, always with `last.ckpt` beside them (each
    written atomically by AtomicCheckpointIO)."""
    from pytorch_lightning.callbacks import ModelCheckpoint

    every = spec.train.checkpoint_every_n_steps
    if every:
        return ModelCheckpoint(dirpath=folder, filename="step{step:07d}", every_n_train_steps=every,
                               auto_insert_metric_name=False, save_last=True)
    return ModelCheckpoint(dirpath=folder, filename="epoch{epoch:03d}", auto_insert_metric_name=False,
                           save_last=True)


def _resume_point(spec: ExperimentSpec, out: Path) -> tuple[str, Path]:
    """(MLflow run id, checkpoint) of the unfinished pretraining to continue; a clear error when
    there is none or it was made by another configuration."""
    fresh = f"run `pipeline pretrain specs/{spec.name}.yaml` without --resume"
    record = _read_json(out / "run.json", f"nothing to resume: {fresh}")
    if record.get("spec_hash") != spec_hash(spec):
        raise PipelineError(f"{out} was made by another configuration (spec hash "
                            f"{record.get('spec_hash')}, now {spec_hash(spec)}): {fresh}")
    if record.get("finished"):
        raise PipelineError(f"the pretraining in {out} finished: nothing to resume")
    # last.ckpt ends an epoch (or a checkpoint_every_n_steps interval): resuming from it
    # repeats the uninterrupted run exactly. interrupted.ckpt (Ctrl-C mid-epoch) is the fallback.
    for name in ("last.ckpt", "interrupted.ckpt"):
        if (out / "checkpoints" / name).is_file():
            return record["run_id"], out / "checkpoints" / name
    raise PipelineError(f"no checkpoint in {out / 'checkpoints'} to resume from: {fresh}")


def _unfinished(spec: ExperimentSpec, out: Path) -> bool:
    """Whether out/ holds an unfinished pretraining of this very configuration."""
    try:
        record = json.loads((out / "run.json").read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return record.get("spec_hash") == spec_hash(spec) and not record.get("finished")


@contextlib.contextmanager
def _resumable_when_disk_full(spec: ExperimentSpec, spec_path: Path | None, checkpoints: Path):
    """A full disk mid-training: say which checkpoint survived and how to continue from it."""
    try:
        yield
    except OSError as err:
        if not is_disk_full(err):
            raise
        command = f"pipeline pretrain {spec_path or f'specs/{spec.name}.yaml'}"
        if (checkpoints / "last.ckpt").is_file():
            then = f"the last good checkpoint, {checkpoints / 'last.ckpt'}, is kept; free space, then continue " \
                   f"with `{command} --resume`"
        else:
            then = f"no checkpoint was written yet; free space, then rerun `{command}`"
        raise PipelineError(f"no space left on device writing {err.filename}: {then}") from err


def pretrain(spec: ExperimentSpec, spec_path: Path | None = None, resume: bool = False,
             auto_resume: bool = False) -> dict:
    """Train the spec's model self-supervised; write the encoder weights and the spec that made
    them to artifacts/<name>/pretrain/, metrics to metrics/<name>/pretrain.json. With `resume`,
    continue the unfinished run of the same spec from its last checkpoint, in the same MLflow
    run; with `auto_resume`, do so when there is one and start afresh otherwise (the DVC
    stage's way, so that rerunning a killed stage continues it)."""
    _setup_logging()
    import pytorch_lightning as pl
    import torch
    from pytorch_lightning.callbacks import (
        LearningRateMonitor,
        TQDMProgressBar,
    )

    from pipeline import plots, tracking
    from pipeline.callbacks import (
        CheckpointOnException,
        EpochMetricsInCheckpoint,
        FiniteLoss,
        GracefulInterrupt,
        RngState,
    )
    from pipeline.data.datamodule import TensorDataModule, load_splits

    out = paths.artifacts_dir(spec.name) / "pretrain"
    metrics_path = paths.metrics_dir(spec.name) / "pretrain.json"
    resume = resume or (auto_resume and _unfinished(spec, out))
    resume_run_id, checkpoint = _resume_point(spec, out) if resume else (None, None)
    if not resume and (out / "checkpoints").is_dir():
        # A fresh run: checkpoints of an earlier run (maybe of another configuration) must not
        # be mistaken for this one's.
        shutil.rmtree(out / "checkpoints")
    pl.seed_everything(spec.seed, workers=True, verbose=False)
    splits = load_splits(spec.data, spec.seed)
    data = TensorDataModule(spec.data, spec.seed, splits)
    model = _build_model(spec, splits.input_shape, len(splits.classes))
    out.mkdir(parents=True, exist_ok=True)

    with (tracking.stage_run(spec, "pretrain", spec_path, resume_run_id=resume_run_id) as run,
          _resumable_when_disk_full(spec, spec_path, out / "checkpoints")):
        if run.run_id is not None:
            _write_json(out / "run.json", {"run_id": run.run_id, "spec_hash": spec_hash(spec),
                                           "tracking_uri": run.uri, "finished": False})
        logger = run.lightning_logger(resumed=resume_run_id is not None)
        interrupt = GracefulInterrupt()
        callbacks = [
            interrupt,
            _checkpointing(spec, out / "checkpoints"),
            # An error mid-training keeps what was learnt so far.
            CheckpointOnException(out / "checkpoints"),
            FiniteLoss(),
            RngState(),
            EpochMetricsInCheckpoint(),
            TQDMProgressBar(refresh_rate=10),
        ]
        if logger:  # secondary DDP processes log nothing
            callbacks.append(LearningRateMonitor(logging_interval="epoch"))
        trainer = build_trainer(spec, logger=logger, callbacks=callbacks, default_root_dir=out)
        log.info("pretrain %s: %s on %d examples, %d epochs; MLflow run %s%s", spec.name,
                 spec.model.kind, len(splits.train[1]), spec.train.max_epochs, run.run_id,
                 f"; resuming from {checkpoint}" if checkpoint else "")
        started = time.perf_counter()
        try:
            trainer.fit(model, datamodule=data, ckpt_path=checkpoint)
        except SystemExit:
            # Lightning turns Ctrl-C into a graceful shutdown and sys.exit(1).
            if trainer.interrupted:
                raise KeyboardInterrupt from None
            raise
        wall = time.perf_counter() - started
        if interrupt.requested:
            trainer.save_checkpoint(out / "checkpoints" / "interrupted.ckpt")
            raise KeyboardInterrupt
        if not trainer.is_global_zero:
            return {}
        encoder_path = save_torch_atomic(model.encoder.state_dict(), out / "encoder.pt")
        # The whole trained model too: the evaluate stage scores a family's own outputs with it.
        save_torch_atomic(model.state_dict(), out / "model.pt")
        write_atomic(out / "spec.yaml", lambda tmp: tmp.write_text(dump(spec)))
        steps = trainer.global_step
        # Throughput of this process's share of the training (a resumed run did the rest).
        steps_before = (torch.load(checkpoint, map_location="cpu", weights_only=False)["global_step"]
                        if checkpoint else 0)
        seen = (steps - steps_before) * spec.data.batch_size * max(1, trainer.world_size)
        final = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        result = {
            "run_id": run.run_id,
            "spec_hash": spec_hash(spec),
            "epochs": trainer.current_epoch,
            "steps": steps,
            "wall_time_s": round(wall, 1),
            "examples_per_s": round(seen / wall, 1) if wall else 0.0,
            "train_loss": final.get("train/loss_epoch"),
            "val_accuracy": final.get(model.validation_metric),  # online probe, or the network itself
        }
        run.log_metrics({"wall_time_s": result["wall_time_s"], "examples_per_s": result["examples_per_s"]})
        diagnostics = model.diagnostics()
        run.set_tags(diagnostics)
        result.update(diagnostics)
        _write_json(out / "run.json", {"run_id": run.run_id, "spec_hash": spec_hash(spec),
                                       "tracking_uri": run.uri, "finished": True})
        _write_json(metrics_path, result)
        figures = []
        for stem, (title, names) in model.plot_groups().items():
            history = {name: [(m.step, m.value) for m in run.client.get_metric_history(run.run_id, name)]
                       for name in names}
            figures.append(plots.curves(history, f"{spec.name}: {title}", "step", out / f"{stem}.png"))
        for path in (encoder_path, out / "spec.yaml", metrics_path, *figures):
            run.log_artifact(path)
    log.info("pretrain %s: done in %.0f s (%.0f examples/s); encoder in %s", spec.name, wall,
             result["examples_per_s"], encoder_path)
    return result


# ---------------------------------------------------------------- evaluate


def _pretrain_hint(spec: ExperimentSpec) -> str:
    return f"run `pipeline pretrain specs/{spec.name}.yaml` first"


def _upstream_run(spec: ExperimentSpec) -> str:
    """The pretraining run whose encoder this spec's downstream stage reads; a clear error when
    there is none, or when it was made by another model section."""
    import yaml

    folder = paths.artifacts_dir(spec.name) / "pretrain"
    upstream = _read_json(folder / "run.json", _pretrain_hint(spec))
    if not upstream.get("finished"):
        raise PipelineError(f"the pretraining in {folder} did not finish: continue it with "
                            f"`pipeline pretrain specs/{spec.name}.yaml --resume`")
    made_by = yaml.safe_load((folder / "spec.yaml").read_text()) if (folder / "spec.yaml").exists() else {}
    if made_by.get("model") != spec.model.model_dump(mode="json"):
        raise PipelineError(f"{folder} holds an encoder made by a different model section than "
                            f"this spec's: {_pretrain_hint(spec)}")
    return upstream["run_id"]


def _models(spec: ExperimentSpec, input_shape: tuple[int, ...], num_classes: int):
    """(trained model, the same model as initialised before training): the whole model from
    model.pt, and its encoder from encoder.pt (the file downstream users read)."""
    import copy

    import pytorch_lightning as pl
    import torch

    folder = paths.artifacts_dir(spec.name) / "pretrain"
    pl.seed_everything(spec.seed, workers=True, verbose=False)
    initial = _build_model(spec, input_shape, num_classes)
    trained = copy.deepcopy(initial)
    for name, module in (("model.pt", trained), ("encoder.pt", trained.encoder)):
        try:
            module.load_state_dict(torch.load(folder / name, map_location="cpu", weights_only=True))
        except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as err:
            raise PipelineError(f"{folder / name} is unreadable ({err}): {_pretrain_hint(spec)}") from None
    return trained.eval(), initial.eval()


def evaluate(spec: ExperimentSpec, spec_path: Path | None = None) -> dict:
    """Every downstream task of the spec on the pretrained encoder, each next to its baselines
    computed the same way in the same run: the raw input (pixels, or the signal) and the
    untrained encoder."""
    _setup_logging()
    import torch

    from pipeline import plots, tracking
    from pipeline.data.datamodule import load_splits
    from pipeline.downstream.probes import extract_features, knn_accuracy, linear_probe, raw_input

    started = time.perf_counter()
    upstream_id = _upstream_run(spec)
    # `train_subset` limits pretraining; probes train on `probe_subset` (default: all) images.
    splits = load_splits(spec.data.model_copy(update={"train_subset": spec.data.probe_subset}),
                         spec.seed)
    num_classes = len(splits.classes)
    trained_model, initial_model = _models(spec, splits.input_shape, num_classes)
    trained, initial = trained_model.encoder, initial_model.encoder
    out = paths.artifacts_dir(spec.name) / "evaluate"
    out.mkdir(parents=True, exist_ok=True)
    device = "cuda" if torch.cuda.is_available() and spec.train.accelerator in ("auto", "gpu") else "cpu"

    with tracking.stage_run(spec, "evaluate", spec_path, upstream_run_id=upstream_id) as run:
        log.info("evaluate %s: features of %d train / %d val / %d test examples; MLflow run %s",
                 spec.name, len(splits.train[1]), len(splits.val[1]), len(splits.test[1]), run.run_id)
        feature_sets = {
            "encoder": {n: extract_features(trained, s[0], device=device) for n, s in _named(splits)},
            "random_encoder": {n: extract_features(initial, s[0], device=device) for n, s in _named(splits)},
            "raw_input": {n: raw_input(s[0]) for n, s in _named(splits)},
        }
        labels = {n: s[1] for n, s in _named(splits)}
        results: dict[str, dict[str, float]] = {}
        predictions = {}
        for task in spec.downstream:
            results[task.kind] = {}
            for name, feats in feature_sets.items():
                train, val, test = ((feats[n], labels[n]) for n in ("train", "val", "test"))
                if task.kind == "linear_probe":
                    probe = linear_probe(train, val, test, num_classes, task.weight_decays, task.max_iter)
                    accuracy, predicted = probe.accuracy, probe.predictions
                    results[task.kind][f"{name}_weight_decay"] = probe.weight_decay
                else:
                    accuracy, predicted = knn_accuracy(train, test, num_classes, task.k, task.temperature)
                results[task.kind][name] = accuracy
                predictions[(task.kind, name)] = predicted
                log.info("  %-12s %-15s test accuracy %.4f", task.kind, name, accuracy)
        run.log_metrics({f"{task}/{name}": value for task, row in results.items()
                         for name, value in row.items()})
        # The family's own measurements (a classifier's test accuracy, spike statistics, ...).
        own, own_artifacts = trained_model.to(device).evaluate_model(
            splits.test[0], splits.test[1], splits.classes, out)
        if own:
            results["network"] = own
            run.log_metrics({f"network/{name}": value for name, value in own.items()})
            log.info("  network: %s", ", ".join(f"{k} {v:.4g}" for k, v in own.items()))

        artifacts = list(own_artifacts)
        test_labels = labels["test"].numpy()
        for (task, name), predicted in predictions.items():
            if name == "encoder":
                artifacts.append(plots.confusion_matrix(
                    test_labels, predicted.numpy(), splits.classes,
                    f"{spec.name}: {task} on the pretrained encoder "
                    f"({results[task][name]:.1%})", out / f"confusion_{task}.png"))
        artifacts.append(_embedding_plot(spec, feature_sets, test_labels, splits.classes, out))
        wall = time.perf_counter() - started
        result = {"run_id": run.run_id, "pretrain_run_id": upstream_id, "spec_hash": spec_hash(spec),
                  "model": spec.model.kind, "dataset": spec.data.dataset, "wall_time_s": round(wall, 1), **results}
        metrics_path = paths.metrics_dir(spec.name) / "evaluate.json"
        _write_json(metrics_path, result)
        run.log_metrics({"wall_time_s": result["wall_time_s"]})
        for path in (*artifacts, metrics_path):
            run.log_artifact(path)
    return result


def _named(splits):
    return (("train", splits.train), ("val", splits.val), ("test", splits.test))


def _embedding_plot(spec: ExperimentSpec, feature_sets: dict, labels, classes, out: Path,
                    points: int = 1500) -> Path:
    """t-SNE (after PCA to 50 dimensions) of the same test images under each feature set."""
    import numpy as np
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    from pipeline import plots

    chosen = np.random.default_rng(spec.seed).permutation(len(labels))[:points]
    panels = {}
    for name, feats in feature_sets.items():
        x = feats["test"].numpy()[chosen]
        x = (x - x.mean(0)) / (x.std(0) + 1e-6)
        x = PCA(n_components=min(50, x.shape[1]), random_state=spec.seed).fit_transform(x)
        panels[name.replace("_", " ")] = TSNE(n_components=2, init="pca", random_state=spec.seed,
                                              perplexity=30).fit_transform(x)
    return plots.embeddings(panels, labels[chosen], classes,
                            f"{spec.name}: t-SNE of test features", out / "embedding.png")


# ---------------------------------------------------------------- report


COLUMNS = ("spec", "model", "dataset", "network", "linear probe", "kNN", "raw input (linear / kNN)",
           "random encoder (linear / kNN)", "wall time", "MLflow run (evaluate)")


def _row(name: str, evaluated: dict, pretrained: dict) -> list[str]:
    def pct(task: str, key: str) -> str:
        value = evaluated.get(task, {}).get(key)
        return f"{100 * value:.1f}%" if value is not None else "-"

    wall = evaluated.get("wall_time_s", 0) + pretrained.get("wall_time_s", 0)
    return [
        name,
        evaluated.get("model", "?"),
        evaluated.get("dataset", "?"),
        pct("network", "accuracy"),
        pct("linear_probe", "encoder"),
        pct("knn", "encoder"),
        f"{pct('linear_probe', 'raw_input')} / {pct('knn', 'raw_input')}",
        f"{pct('linear_probe', 'random_encoder')} / {pct('knn', 'random_encoder')}",
        f"{wall / 60:.1f} min",
        evaluated.get("run_id", "-"),
    ]


def _table(rows: list[list[str]], columns: tuple[str, ...] = COLUMNS) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _references(datasets: set[str]) -> str:
    """Published results on the datasets in the table, for scale (not computed here)."""
    from pipeline.data.registry import DATASETS

    rows = [[name, r.model, f"{100 * r.accuracy:.0f}%", r.source]
            for name in sorted(datasets) if name in DATASETS for r in DATASETS[name].references]
    if not rows:
        return ""
    return ("\nPublished reference figures on the same test splits (quoted, not measured here):\n\n"
            + _table(rows, ("dataset", "model", "test accuracy", "source")))


def report(names: list[str] | None = None) -> str:
    """reports/summary.md over every evaluated spec (and reports/<name>.md for each named one);
    prints the summary."""
    metrics_root = paths.project_root() / "metrics"
    evaluated = sorted(p.parent.name for p in metrics_root.glob("*/evaluate.json"))
    for name in names or []:
        if name not in evaluated:
            raise PipelineError(f"{name} has not been evaluated yet: run `pipeline evaluate specs/{name}.yaml`")
    rows, datasets = {}, {}
    for name in evaluated:
        folder = metrics_root / name
        ev = _read_json(folder / "evaluate.json", f"run `pipeline evaluate specs/{name}.yaml` again")
        pre = json.loads((folder / "pretrain.json").read_text()) if (folder / "pretrain.json").exists() else {}
        rows[name] = _row(name, ev, pre)
        datasets[name] = ev.get("dataset", "")
    header = ("Test accuracy on the official test split: of the trained network itself where it classifies "
              "(supervised families), and of probes on its features. Baselines are computed in the same run, "
              "the same way: the same probe on the raw input (pixels, or the signal) and on the same "
              "encoder untrained.\n\n")
    summary = "# Summary\n\n" + header + (_table(list(rows.values())) if rows else "No spec evaluated yet.\n")
    summary += _references(set(datasets.values()))
    reports = paths.reports_dir()
    write_atomic(reports / "summary.md", lambda tmp: tmp.write_text(summary))
    for name in names or []:
        text = f"# {name}\n\n" + header + _table([rows[name]]) + _references({datasets[name]})
        write_atomic(reports / f"{name}.md", lambda tmp, text=text: tmp.write_text(text))
    print(summary)
    return summary
