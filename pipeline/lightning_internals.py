"""Everything the project reads of Lightning that is not its public API, in one place.

Each function names what it reads and why no public API gives it. tests/test_lightning_internals.py
runs a real fit and checks every one of them, so an upgrade of Lightning that moves one fails
there, loudly, instead of silently in a resumed run's curves. pyproject.toml bounds Lightning to
the minor versions this was tested on."""

from __future__ import annotations

import pytorch_lightning as pl


def epoch_metrics_to_log(trainer: pl.Trainer) -> dict[str, float] | None:
    """The epoch-reduced metrics the loop sends to the loggers next, at the end of a training epoch
    (before it has sent them); None outside a fit. `trainer.logged_metrics` holds only what was
    already sent, and `trainer.callback_metrics` mixes in what is not logged."""
    if trainer._results is None:
        return None
    return {key: float(value) for key, value in trainer._logger_connector.metrics["log"].items()}


def batches_that_stepped(trainer: pl.Trainer) -> int:
    """The step counter the loggers receive (Lightning's own convention for the x axis of a metric;
    its LearningRateMonitor reads the same counter). `trainer.global_step` counts optimizer steps,
    which differ with several optimizers or manual optimisation."""
    return trainer.fit_loop.epoch_loop._batches_that_stepped


def attached_trainer(module: pl.LightningModule) -> pl.Trainer | None:
    """The trainer fitting the module, or None when it is called outside one (tests, tools): the
    public `module.trainer` raises instead."""
    return module._trainer
