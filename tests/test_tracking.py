"""Tracking: what a stage run records, and several processes logging to one sqlite store."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from pipeline import tracking
from pipeline.spec.experiment import spec_hash
from pipeline.spec.load import load_text

SPEC = "name: {name}\ntracking: {{experiment: shared}}\nmodel: {{kind: swav}}\n"


def test_a_stage_run_records_what_reproduces_it(project: Path):
    spec = load_text(SPEC.format(name="record"))
    spec_file = project / "specs" / "record.yaml"
    spec_file.write_text(SPEC.format(name="record"))
    with tracking.stage_run(spec, "pretrain", spec_file) as run:
        run_id = run.run_id
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    recorded = client.get_run(run_id)
    assert recorded.info.status == "FINISHED"
    assert recorded.info.artifact_uri.startswith((project / "mlartifacts").as_uri())
    tags = recorded.data.tags
    assert tags["spec_hash"] == spec_hash(spec)
    assert tags["stage"] == "pretrain"
    assert {"git_commit", "git_dirty", "version.torch", "version.mlflow"} <= set(tags)
    assert tags["data.fashion_mnist.train-images-idx3-ubyte.gz.sha256"].startswith("b0564c3e")
    assert recorded.data.params["model.prototypes"] == "100"
    assert [a.path for a in client.list_artifacts(run_id, "spec")] == ["spec/record.yaml"]


@pytest.mark.slow
def test_concurrent_processes_lose_no_metric(project: Path):
    worker = textwrap.dedent(f"""
        import sys
        from pipeline import tracking
        from pipeline.spec.load import load_text
        spec = load_text({SPEC!r}.format(name="w" + sys.argv[1]))
        with tracking.stage_run(spec, "pretrain", None) as run:
            for step in range(100):
                run.log_metrics({{"a": step, "b": -step}}, step=step)
    """)
    env = {**os.environ, "PIPELINE_ROOT": str(project)}
    workers = [subprocess.Popen([sys.executable, "-c", worker, str(i)], env=env,
                                stderr=subprocess.PIPE, text=True) for i in range(6)]
    for process in workers:
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("shared").experiment_id])
    assert len(runs) == 6
    assert all(r.info.status == "FINISHED" for r in runs)
    for run in runs:
        for key in ("a", "b"):
            assert len(client.get_metric_history(run.info.run_id, key)) == 100


def test_a_stage_leaves_no_tracking_uri_behind(project: Path):
    spec = load_text(SPEC.format(name="leak"))
    with tracking.stage_run(spec, "pretrain", None) as run:
        run.lightning_logger().experiment  # noqa: B018 - Lightning's logger exports the URI
    assert "MLFLOW_TRACKING_URI" not in os.environ


def test_a_resumed_run_logs_each_step_once(project: Path):
    """The steps a resumed run replays (those after its checkpoint) are already in the run up to
    where it was interrupted: they are not logged a second time; later ones are."""
    spec = load_text(SPEC.format(name="replay"))
    with tracking.stage_run(spec, "pretrain", None) as run:
        run.log_metrics({"loss": 1.0}, step=3)
        for step in (7, 15):
            run.log_metrics({"loss": float(step), "lr": 0.1}, step=step)
        run_id = run.run_id
    with tracking.stage_run(spec, "pretrain", None, resume_run_id=run_id) as run:
        logger = run.lightning_logger(resumed=True)
        for step in (7, 15, 23):  # replayed from the checkpoint at step 3
            logger.log_metrics({"loss": -1.0, "lr": 0.2, "new": 1.0}, step=step)
        # Lightning's "epoch" rides along with every call: it is logged once a step, with the first
        # call that logs something new there.
        logger.log_metrics({"lr": 0.3, "epoch": 1}, step=15)
        logger.log_metrics({"val": 0.5, "epoch": 1}, step=15)
        logger.flush()
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    history = {key: sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))
               for key in ("loss", "lr", "new", "epoch", "val")}
    assert history["loss"] == [(3, 1.0), (7, 7.0), (15, 15.0), (23, -1.0)]
    assert history["lr"] == [(7, 0.1), (15, 0.1), (23, 0.2)]
    assert history["new"] == [(7, 1.0), (15, 1.0), (23, 1.0)]
    assert history["epoch"] == [(15, 1.0)]
    assert history["val"] == [(15, 0.5)]


def test_the_training_logger_writes_in_batches_and_on_flush(project: Path, monkeypatch):
    """Points gather until `write_every_s` has passed since the last write (checked when Lightning
    calls `save` after a logging call) or until `flush()`; none is lost or written twice."""
    spec = load_text(SPEC.format(name="batched"))
    with tracking.stage_run(spec, "pretrain", None) as run:
        logger = run.lightning_logger(write_every_s=3600)
        writes = []
        real = logger.experiment.log_batch
        monkeypatch.setattr(logger.experiment, "log_batch", lambda *a, **k: (writes.append(k), real(*a, **k)))
        for step in range(5):
            logger.log_metrics({"loss": float(step)}, step=step)
            logger.save()
        assert writes == []
        logger.flush()
        assert len(writes) == 1
        assert len(writes[0]["metrics"]) == 5
        logger.write_every_s = 0
        logger.log_metrics({"loss": 5.0}, step=5)
        logger.save()
        assert len(writes) == 2
        for key in ("val", "lr"):  # two calls at one step, each with Lightning's "epoch"
            logger.log_metrics({key: 0.5, "epoch": 3}, step=6)
        logger.flush()
        run_id = run.run_id
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    history = client.get_metric_history(run_id, "loss")
    assert sorted((m.step, m.value) for m in history) == [(step, float(step)) for step in range(6)]
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "epoch")] == [(6, 3.0)]  # once a step


def test_the_training_logger_keeps_the_points_a_failed_write_did_not_store(project: Path, monkeypatch):
    spec = load_text(SPEC.format(name="failing"))
    with tracking.stage_run(spec, "pretrain", None) as run:
        logger = run.lightning_logger(write_every_s=3600)
        for step in range(3):
            logger.log_metrics({"loss": float(step)}, step=step)
        real = logger.experiment.log_batch

        def locked(*args, **kwargs):
            raise RuntimeError("database is locked")

        monkeypatch.setattr(logger.experiment, "log_batch", locked)
        with pytest.raises(RuntimeError, match="locked"):
            logger.flush()
        assert len(logger.pending) == 3  # nothing lost: the next flush writes them
        monkeypatch.setattr(logger.experiment, "log_batch", real)
        logger.flush()
        assert logger.pending == []
        run_id = run.run_id
    history = MlflowClient(f"sqlite:///{project / 'mlflow.db'}").get_metric_history(run_id, "loss")
    assert sorted(m.step for m in history) == [0, 1, 2]


def test_the_training_logger_pickles_for_spawned_processes(project: Path):
    import pickle

    spec = load_text(SPEC.format(name="pickled"))
    with tracking.stage_run(spec, "pretrain", None) as run:
        logger = run.lightning_logger(step_offset=7)
        copy = pickle.loads(pickle.dumps(logger))
        assert (type(copy).__name__, copy.step_offset, copy.run_id) == ("BatchedRunLogger", 7, run.run_id)
