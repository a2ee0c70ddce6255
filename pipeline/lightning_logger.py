"""The MLflow logger the training stage gives Lightning (see `pipeline.tracking.Run.lightning_logger`).
A module of its own, so that the CLI's other commands do not import Lightning, and the class
is importable by name (a `ddp_spawn` process receives the logger pickled)."""

from __future__ import annotations

import re
import time

from mlflow.entities import Metric
from pytorch_lightning.loggers import MLFlowLogger
from pytorch_lightning.utilities.rank_zero import rank_zero_only


class BatchedRunLogger(MLFlowLogger):
    """MLflow's Lightning logger that gathers its points and writes them in one batch at most
    every `write_every_s` seconds (checked in `save`, which Lightning calls after each logging call:
    the UI stays live, while a store transaction per call, a tenth of a short training's time, no
    longer holds it up), and whenever `flush()` is called: the checkpoints call it before each
    save and the stage after each fit, so a checkpoint never stands for points the store lacks.
    (MLflow's own asynchronous logging takes up to a second per flush.) Points at (key, step) in
    `held` are not logged again (a resumed run's replayed steps); steps are shifted by
    `step_offset` (a later phase continues the run's curves)."""

    def __init__(self, held=frozenset(), step_offset: int = 0, write_every_s: float = 5.0, **options):
        super().__init__(**options)
        self.held, self.step_offset, self.write_every_s = set(held), step_offset, write_every_s
        self.pending: list[Metric] = []
        self.written_at = time.monotonic()

    @rank_zero_only
    def log_metrics(self, metrics, step=None):
        step = (step or 0) + self.step_offset
        # Lightning adds "epoch" to every call: it goes with the first call at a step that logs
        # something new, once (MLflow keeps repeats of a point only when their timestamps differ,
        # which would make the count depend on timing).
        new = {k: v for k, v in metrics.items() if k != "epoch" and (k, step) not in self.held
               and not isinstance(v, str)}
        if new and "epoch" in metrics and ("epoch", step) not in self.held:
            new["epoch"] = metrics["epoch"]
            self.held.add(("epoch", step))
        now = int(time.time() * 1000)
        # The characters MLflow takes in a name, as Lightning's own logger keeps them.
        self.pending += [Metric(re.sub("[^a-zA-Z0-9_/. -]+", "", key), float(value), now, step)
                         for key, value in new.items()]

    @rank_zero_only
    def save(self):
        super().save()
        if time.monotonic() - self.written_at >= self.write_every_s:
            self.flush()

    @rank_zero_only
    def flush(self):
        """Write every point gathered so far; a point leaves the queue once it is written."""
        while self.pending:
            chunk = self.pending[:1000]  # MLflow's limit per batch
            self.experiment.log_batch(self.run_id, metrics=chunk)
            del self.pending[: len(chunk)]
        self.written_at = time.monotonic()

    @rank_zero_only
    def finalize(self, status="success"):
        self.flush()
        super().finalize(status)
