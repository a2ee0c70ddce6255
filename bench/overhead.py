"""What checkpointing and MLflow logging cost a training step: swav_fmnist's model (in fp32) on
20k of its images, trained for the same steps with nothing, with checkpoints every N steps (the atomic writer
the stages use), and with the MLflow logger on a sqlite store, all in the same process.

    python bench/overhead.py [--steps 60] [--repeats 3]

Prints, for each configuration, the median step time, and the time spent inside checkpoint
writes and MLflow logging calls as a share of the training time (timed directly, so it does not
drown in the step-to-step noise of a shared CPU).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch

from pipeline import stages, tracking
from pipeline.callbacks import AtomicCheckpointIO
from pipeline.data.datamodule import TensorDataModule, load_splits
from pipeline.spec.load import load

ROOT = Path(__file__).resolve().parent.parent


class StepTimer(pl.Callback):
    """Wall time between the ends of consecutive steps: the step itself plus whatever the
    callbacks and the logger do after it (checkpoint writes, metric logging)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._last: float | None = None

    def on_train_batch_end(self, *args) -> None:
        now = time.perf_counter()
        if self._last is not None:
            self.times.append(now - self._last)
        self._last = now


class TimedCheckpointIO(AtomicCheckpointIO):
    spent = 0.0

    def save_checkpoint(self, *args, **kwargs) -> None:
        started = time.perf_counter()
        super().save_checkpoint(*args, **kwargs)
        TimedCheckpointIO.spent += time.perf_counter() - started


def timed(function, counter: dict):
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            counter["spent"] += time.perf_counter() - started
    return wrapper


def run(spec, splits, steps: int, folder: Path, checkpoint_every: int | None, mlflow_uri: str | None,
        log_every: int) -> tuple[list[float], float]:
    """(step times past warm-up, share of the training time spent inside checkpoint writes and
    logging calls)."""
    pl.seed_everything(spec.seed, verbose=False)
    data = TensorDataModule(spec.data, spec.seed, splits)
    model = stages.build_model(spec, splits.input_shape, len(splits.classes))
    # The timer comes last, so a step's time includes what the other callbacks do after it.
    timer = StepTimer()
    callbacks = [timer]
    if checkpoint_every:
        callbacks.insert(0, pl.callbacks.ModelCheckpoint(dirpath=folder, every_n_train_steps=checkpoint_every,
                                                         save_last=True))
    logger = False
    logging = {"spent": 0.0}
    if mlflow_uri:
        client, experiment = tracking.open_store(mlflow_uri, "overhead")
        created = client.create_run(experiment)
        logger = tracking.Run(client, created.info.run_id, experiment, mlflow_uri).lightning_logger()
        logger.log_metrics = timed(logger.log_metrics, logging)
    TimedCheckpointIO.spent = 0.0
    trainer = pl.Trainer(max_steps=steps, logger=logger, callbacks=callbacks,
                         enable_checkpointing=bool(checkpoint_every), enable_progress_bar=False,
                         enable_model_summary=False, log_every_n_steps=log_every,
                         plugins=[TimedCheckpointIO()], accelerator="cpu", num_sanity_val_steps=0,
                         limit_val_batches=0)
    started = time.perf_counter()
    trainer.fit(model, datamodule=data)
    fit = time.perf_counter() - started
    return timer.times[5:], (TimedCheckpointIO.spent + logging["spent"]) / fit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_float32_matmul_precision("high")
    spec = load(ROOT / "specs" / "swav_fmnist.yaml", ["data.train_subset=20000", "train.precision=32-true"])
    splits = load_splits(spec.data, spec.seed)
    configs = {
        "bare (no checkpoints, no logger)": dict(checkpoint_every=None, mlflow=False, log_every=10),
        "checkpoint every 50 steps": dict(checkpoint_every=50, mlflow=False, log_every=10),
        "checkpoint every step": dict(checkpoint_every=1, mlflow=False, log_every=10),
        "MLflow logger, every 10 steps (spec default)": dict(checkpoint_every=None, mlflow=True, log_every=10),
        "MLflow logger, every step": dict(checkpoint_every=None, mlflow=True, log_every=1),
    }
    times: dict[str, list[float]] = {name: [] for name in configs}
    shares: dict[str, list[float]] = {name: [] for name in configs}
    with tempfile.TemporaryDirectory() as scratch:
        uri = f"sqlite:///{Path(scratch) / 'mlflow.db'}"
        for repeat in range(args.repeats):  # interleaved, so drifts in machine speed hit all alike
            for name, c in configs.items():
                folder = Path(scratch) / f"ckpt{repeat}{hash(name)}"
                steps, share = run(spec, splits, args.steps, folder, c["checkpoint_every"],
                                   uri if c["mlflow"] else None, c["log_every"])
                times[name] += steps
                shares[name].append(share)
                ckpt = next(folder.glob("*.ckpt"), None)
                if ckpt is not None and repeat == 0:
                    print(f"  (checkpoint size {ckpt.stat().st_size / 1e6:.1f} MB)")
    bare = statistics.median(times["bare (no checkpoints, no logger)"])
    print(f"\nswav_fmnist model (fp32), batch {spec.data.batch_size}, {args.steps} steps x {args.repeats} repeats, CPU "
          f"({torch.get_num_threads()} threads)")
    print(f"{'configuration':48s} {'median step':>12s} {'vs bare':>8s} {'inside saves/logging':>21s}")
    for name, values in times.items():
        step = statistics.median(values)
        print(f"{name:48s} {step * 1000:9.1f} ms {100 * (step - bare) / bare:+7.1f}% "
              f"{100 * statistics.mean(shares[name]):20.2f}%")


if __name__ == "__main__":
    main()
