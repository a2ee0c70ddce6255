"""The training stage: a spec's model trained by Lightning, resumable, into
artifacts/<name>/pretrain/ (weights, the resolved spec, run.json) and one MLflow run."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from pipeline import paths
from pipeline.errors import PipelineError
from pipeline.fsutil import save_torch_atomic, write_atomic
from pipeline.provenance import git_state, machine
from pipeline.spec.experiment import ExperimentSpec, spec_hash, training_hash
from pipeline.spec.load import dump
from pipeline.stages.common import build_model, log, quiet, setup_logging, spec_command, write_json
from pipeline.stages.dvc import code_paths, fingerprint
from pipeline.stages.resume import (
    checkpointing,
    current,
    phase_checkpoint,
    resumable_when_disk_full,
    resume_point,
    unfinished,
)


def trainer_options(spec: ExperimentSpec) -> dict:
    """The Trainer's keyword arguments the spec's `train` section sets (named as Trainer's own
    parameters: tests/test_train_options.py checks them against its signature)."""
    t = spec.train
    options = dict(
        max_epochs=t.max_epochs,
        limit_train_batches=t.limit_train_batches,
        accelerator=t.accelerator,
        devices=t.devices,
        strategy=t.strategy,
        num_nodes=t.num_nodes,
        precision=t.precision,
        accumulate_grad_batches=t.accumulate_grad_batches or 1,
        # "warn": deterministic algorithms wherever they exist (all of them on CPU), without
        # failing on the few CUDA kernels that have none.
        deterministic="warn" if t.deterministic else False,
        log_every_n_steps=t.log_every_n_steps,
        gradient_clip_val=t.gradient_clip_norm,
        gradient_clip_algorithm="norm",
        enable_model_summary=False,
    )
    if t.val_check_interval is not None:
        options["val_check_interval"] = t.val_check_interval
    if t.accelerator == "auto" and spec.model is not None:
        from pipeline import plugins

        entry = plugins.models().get(spec.model.kind)
        if entry is not None and entry.cpu_only:
            options["accelerator"] = "cpu"
    return options


def build_trainer(spec: ExperimentSpec, **overrides):
    """A Lightning Trainer configured by the spec's `train` section. Under SLURM, Lightning's own
    requeue (which restores its hpc_ckpt into a new MLflow run) is off: the stage's interrupt
    handling saves the checkpoint and requeues, and `--auto-resume` continues the same run."""
    import pytorch_lightning as pl
    from lightning_fabric.utilities.exceptions import MisconfigurationException
    from pytorch_lightning.plugins.environments import SLURMEnvironment

    from pipeline.callbacks import AtomicCheckpointIO

    plugins = [AtomicCheckpointIO()]
    if SLURMEnvironment.detect():
        plugins.append(SLURMEnvironment(auto_requeue=False))
    options = {**trainer_options(spec), "plugins": plugins, **overrides}
    try:
        return pl.Trainer(**options)
    except (MisconfigurationException, ValueError, RuntimeError, ImportError) as err:
        raise PipelineError(f"{spec.name}: Lightning refuses the spec's train section ({err}); change "
                            "train.accelerator, train.devices, train.strategy or train.precision (see `pipeline "
                            "schema`)") from None


def compile_network(spec: ExperimentSpec, model) -> None:
    """`train.compile`: torch.compile the model's encoder in place (its parameters and state_dict
    keys stay as they are, so checkpoints and weight files are the eager model's)."""
    mode = spec.train.compile
    if not mode:
        return
    model.encoder.compile(**({} if mode is True else {"mode": mode}))


def _publish_curves(spec: ExperimentSpec, out: Path) -> None:
    """The training's curves (kept with its weights in out/plots/) as metrics/<name>/plots/, the
    folder `dvc plots show` reads."""
    target = paths.metrics_dir(spec.name) / "plots"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(out / "plots", target)


def _fit(spec: ExperimentSpec, model, phase, folder: Path, run, offset: int, resumed: bool,
         checkpoint: Path | None, out: Path):
    """One phase's trainer.fit: checkpoints in `folder`, metrics into the stage's MLflow run at
    steps after `offset`; Ctrl-C saves interrupted.ckpt and raises KeyboardInterrupt."""
    from pytorch_lightning.callbacks import LearningRateMonitor, TQDMProgressBar

    from pipeline.callbacks import (
        CheckpointOnException,
        EpochMetricsInCheckpoint,
        EpochMetricsSynced,
        FiniteLoss,
        GracefulInterrupt,
        RngState,
        TrainingClock,
        flush_loggers,
    )

    logger = run.lightning_logger(resumed=resumed, step_offset=offset)
    interrupt = GracefulInterrupt()
    callbacks = [
        EpochMetricsSynced(),  # first: before any callback that reads the epoch's metrics on one rank
        interrupt,
        checkpointing(spec, folder),
        # An error mid-training keeps what was learnt so far.
        CheckpointOnException(folder),
        FiniteLoss(),
        RngState(),
        TrainingClock(),
        EpochMetricsInCheckpoint(),
    ]
    if spec.train.sparsity is not None:
        from pipeline.sparsity import DynamicSparsity

        callbacks.append(DynamicSparsity(spec.train.sparsity, spec.seed))
    if not quiet():
        callbacks.append(TQDMProgressBar(refresh_rate=10))
    if logger:  # secondary DDP processes log nothing
        callbacks.append(LearningRateMonitor(logging_interval="epoch"))
    trainer = build_trainer(spec, logger=logger, callbacks=callbacks, default_root_dir=out,
                            max_epochs=phase.max_epochs, enable_progress_bar=not quiet())
    try:
        trainer.fit(model, datamodule=phase.data, ckpt_path=checkpoint)
    except BaseException as err:
        flush_loggers(trainer, quiet=True)  # what was logged before the error is kept
        # Lightning turns Ctrl-C into a graceful shutdown and sys.exit(1).
        if isinstance(err, SystemExit) and trainer.interrupted:
            raise KeyboardInterrupt from None
        raise
    flush_loggers(trainer)
    if interrupt.requested:
        trainer.save_checkpoint(folder / "interrupted.ckpt")
        if interrupt.requeue and trainer.is_global_zero:
            from pipeline.callbacks import requeue_slurm_job

            log.info("pretrain %s: %s", spec.name, requeue_slurm_job())
        raise KeyboardInterrupt
    return trainer


def pretrain(spec: ExperimentSpec, spec_path: Path | None = None, resume: bool = False,
             auto_resume: bool = False) -> dict:
    """Train the spec's model (self-supervised or on the labels: its family's objective); write
    the weights and the spec that made them to artifacts/<name>/pretrain/, metrics to
    metrics/<name>/pretrain.json, each curve to metrics/<name>/plots/ (`dvc plots show`). With `resume`,
    continue the unfinished run of the same spec from its last checkpoint, in the same MLflow
    run; with `auto_resume`, do so when there is one and start afresh otherwise (the DVC
    stage's way, so that rerunning a killed stage continues it)."""
    if spec.model is None:
        raise PipelineError(f"{spec.name} trains nothing of its own: it runs its downstream tasks on "
                            f"{spec.upstream['encoder']}'s encoder; run `{spec_command(spec, 'evaluate', spec_path)}`")
    setup_logging()
    import pytorch_lightning as pl
    import torch

    from pipeline import plots, tracking
    from pipeline.callbacks import TrainingClock
    from pipeline.data.datamodule import load_splits
    from pipeline.models.base import Phase
    from pipeline.upstream import lineage, register

    out = paths.artifacts_dir(spec.name) / "pretrain"
    metrics_path = paths.metrics_dir(spec.name) / "pretrain.json"
    upstreams = lineage(spec, spec_path.parent if spec_path else None)
    code = fingerprint(code_paths("pretrain", spec.model.kind))
    lineage_ids = {role: source.run_id for role, source in upstreams.items()}
    if auto_resume and not resume and (kept := current(spec, out, code, lineage_ids)) is not None:
        # Rerun by DVC for a change that does not touch the training (a downstream task, say):
        # the finished training of this configuration, code and upstream stands.
        write_json(metrics_path, kept)
        _publish_curves(spec, out)
        log.info("pretrain %s: the finished training in %s is current (same configuration, code and upstream): "
                 "kept", spec.name, out)
        return kept
    resume = resume or (auto_resume and unfinished(spec, out, code, lineage_ids))
    resume_run_id, previous = resume_point(spec, out) if resume else (None, {})
    if not resume:
        # A fresh run: checkpoints and phase weights of an earlier run (maybe of another
        # configuration) must not be mistaken for this one's.
        for folder in ("checkpoints", "phases", "plots"):
            shutil.rmtree(out / folder, ignore_errors=True)
        (out / "metrics.json").unlink(missing_ok=True)
    extra = {"encoder": upstreams["encoder"].models()[0].encoder} if "encoder" in upstreams else {}
    pl.seed_everything(spec.seed, workers=True, verbose=False)
    data = upstreams.get("data")
    splits = load_splits(spec.data, spec.seed, written=(data.source, data.folder) if data else None)
    check = getattr(spec.model, "check_input", None)
    if data and check is not None:  # written data: its shape is known only now
        try:
            check(splits.input_shape)
        except ValueError as err:
            raise PipelineError(f"{spec.name}: model kind {spec.model.kind!r} cannot take the data {data.name} "
                                f"wrote (shape {list(splits.input_shape)}): {err}") from None
    model = build_model(spec, splits.input_shape, splits.num_classes, **extra)
    compile_network(spec, model)
    phases = model.phases(spec, splits)
    out.mkdir(parents=True, exist_ok=True)
    # Phases finished by the run being resumed, with the global step each ended at.
    progress: dict[str, int] = dict(previous.get("phases_done", {}))
    # Seconds spent on the phases finished before (by an interrupted run); each fitted phase adds its own.
    trained_s = float(previous.get("trained_s", 0.0)) if progress else 0.0

    def record(finished: bool) -> dict:
        return {"run_id": run.run_id, "spec_hash": spec_hash(spec), "training_hash": training_hash(spec),
                "tracking_uri": run.uri, "finished": finished, "input_shape": list(splits.input_shape),
                "num_classes": splits.num_classes, "classes": list(splits.classes or ()), "code": code,
                "upstream": lineage_ids, "phases_done": progress, "trained_s": round(trained_s, 1)}

    def checkpoints(phase: Phase) -> Path:
        return out / "checkpoints" if len(phases) == 1 else out / "checkpoints" / phase.name

    if resume and len(phases) == 1 and phase_checkpoint(checkpoints(phases[0])) is None:
        raise PipelineError(f"no checkpoint in {checkpoints(phases[0])} to resume from: run "
                            f"`{spec_command(spec, 'pretrain', spec_path)}` without --resume")

    with (tracking.stage_run(spec, "pretrain", spec_path, resume_run_id=resume_run_id, upstream=upstreams) as run,
          resumable_when_disk_full(spec, spec_path, out / "checkpoints")):
        if run.run_id is not None:
            write_json(out / "run.json", record(finished=False))
        if progress:  # continue after the last finished phase, from the weights it ended with
            last = [phase.name for phase in phases if phase.name in progress][-1]
            model.load_state_dict(torch.load(out / "phases" / f"{last}.pt", map_location="cpu", weights_only=True))
        started = time.perf_counter()
        own_steps = steps = 0  # steps: the run's; own_steps: this process's share
        trainer = None
        for index, phase in enumerate(phases):
            if phase.name in progress:
                steps = progress[phase.name]
                continue
            checkpoint = phase_checkpoint(checkpoints(phase)) if resume else None
            if index > 0:
                # Each later phase starts from a random state of its own, whether the run was
                # resumed before it or not (a checkpoint within the phase carries its state).
                pl.seed_everything(spec.seed + index, workers=True, verbose=False)
            offset = steps  # the phase's steps continue the run's: one curve per metric in MLflow
            log.info("pretrain %s: %s%s on %d examples, %d epochs; MLflow run %s%s", spec.name, spec.model.kind,
                     f", phase {index + 1} of {len(phases)} ({phase.name})" if len(phases) > 1 else "",
                     len(splits.train["input"]), phase.max_epochs, run.run_id,
                     f"; resuming from {checkpoint}" if checkpoint else "")
            trainer = _fit(spec, model, phase, checkpoints(phase), run, offset, resume_run_id is not None,
                           checkpoint, out)
            steps = offset + trainer.global_step
            trained_s += next(c for c in trainer.callbacks if isinstance(c, TrainingClock)).elapsed()
            own_steps += trainer.global_step - (
                torch.load(checkpoint, map_location="cpu", weights_only=False)["global_step"] if checkpoint else 0)
            if not trainer.is_global_zero:
                continue
            consolidating = time.perf_counter()
            measured = model.after_phase(index, phase)
            # What a protocol does between its fits (a continual learner's consolidation and
            # scoring) is part of its training time.
            trained_s += time.perf_counter() - consolidating
            if measured:
                run.log_metrics(measured, step=index)
            if len(phases) > 1:
                # The phase is done once its weights and the record say so: a kill from here on
                # continues with the next phase.
                save_torch_atomic(model.state_dict(), out / "phases" / f"{phase.name}.pt")
                progress[phase.name] = steps
                write_json(out / "run.json", record(finished=False))
        wall = time.perf_counter() - started
        if trainer is not None and not trainer.is_global_zero:
            return {}
        encoder_path = save_torch_atomic(model.encoder.state_dict(), out / "encoder.pt")
        # The whole trained model too: the evaluate stage scores a family's own outputs with it.
        save_torch_atomic(model.state_dict(), out / "model.pt")
        write_atomic(out / "spec.yaml", lambda tmp: tmp.write_text(dump(spec)))
        # Throughput of this process's share of the training (a resumed run did the rest).
        seen = own_steps * spec.data.batch_size * max(1, trainer.world_size if trainer else 1)
        final = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1} if trainer else {}
        result = {
            "run_id": run.run_id,
            "spec_hash": spec_hash(spec),
            "epochs": trainer.current_epoch if trainer else phases[-1].max_epochs,
            "steps": steps,
            "wall_time_s": round(trained_s, 1),  # the whole training's, interruptions left out
            "wall_time_this_process_s": round(wall, 1),
            "examples_per_s": round(seen / wall, 1) if wall else 0.0,
            "train_loss": final.get("train/loss_epoch"),
            "val_accuracy": final.get(model.validation_metric),  # online probe, or the network itself
            "git_commit": git_state(paths.project_root())[0],
            "machine": machine(),
        }
        run.log_metrics({"wall_time_s": result["wall_time_s"], "examples_per_s": result["examples_per_s"]})
        diagnostics = model.diagnostics()
        run.set_tags(diagnostics)
        result.update(diagnostics)
        figures, curves = [], {}
        for stem, (title, names) in model.plot_groups().items():
            history = {name: [(m.step, m.value) for m in run.client.get_metric_history(run.run_id, name)]
                       for name in names}
            curves.update(history)
            figures.append(plots.curves(history, f"{spec.name}: {title}", "step", out / f"{stem}.png"))
        plots.write_curves_csv(curves, out / "plots")
        _publish_curves(spec, out)
        if spec.tracking.register_as:
            result["registered_as"] = register(run, spec, out, spec.tracking.register_as, record(finished=True))
            log.info("pretrain %s: registered in MLflow as %s", spec.name, result["registered_as"])
        write_json(metrics_path, result)
        write_json(out / "metrics.json", result)  # kept with the weights, for a rerun that keeps them
        # Last: the training counts as finished (for evaluation, upstream use and keeping it) only
        # once everything above is written; a kill before this resumes and finishes it.
        write_json(out / "run.json", record(finished=True))
        for path in (encoder_path, out / "spec.yaml", metrics_path, *figures):
            run.log_artifact(path)
    log.info("pretrain %s: done in %.0f s (%.0f examples/s); encoder in %s", spec.name, wall,
             result["examples_per_s"], encoder_path)
    return result
