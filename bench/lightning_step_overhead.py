"""What Lightning's training loop adds to each optimiser step of a small network, against a plain
PyTorch loop doing the same arithmetic: the MLP of the continual specs (784-400-400-10), Adam at
1e-3, batches of 256 (a replay step's 128 new and 128 replayed examples), random inputs held in
memory and served as whole batches by the pipeline's own `TensorBatches` through the same
DataLoader, torch threads as given.

    python bench/lightning_step_overhead.py [--steps 420] [--repeats 3] [--threads 2]

Three loops, each from the same initial weights, repeated (the order rotating) and summarised by
the median:
- plain: zero_grad, forward, cross-entropy, backward, step;
- Lightning: the same step as a LightningModule's training_step under `Trainer.fit` (no logger, no
  checkpoints, no progress bar, no validation);
- Lightning + self.log: the same, the loss logged with `self.log(on_step=True, on_epoch=True,
  prog_bar=True)`, as every training_step of the pipeline's models does.
Prints milliseconds per step and what each Lightning loop adds to the plain one; writes
results/bench/lightning_step_overhead.json (every repeat, the commit, the machine)."""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def network() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 400), nn.ReLU(), nn.Linear(400, 400), nn.ReLU(),
                         nn.Linear(400, 10))


def plain(loader) -> float:
    model = network()
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    start = time.perf_counter()
    for batch in loader:
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(batch["input"]), batch["label"]).backward()
        optimizer.step()
    return time.perf_counter() - start


def lightning(loader, log: bool) -> float:
    import pytorch_lightning as pl

    class Module(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = network()

        def training_step(self, batch, index):
            loss = nn.functional.cross_entropy(self.net(batch["input"]), batch["label"])
            if log:
                self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True)
            return loss

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), 1e-3)

    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu", limit_val_batches=0)
    module = Module()
    start = time.perf_counter()
    trainer.fit(module, loader)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=420)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    inputs = torch.rand(256 * args.steps, 1, 28, 28, generator=generator)
    labels = torch.randint(0, 10, (len(inputs),), generator=generator)
    from pipeline.data.datamodule import TensorBatches

    loader = torch.utils.data.DataLoader(TensorBatches({"input": inputs, "label": labels}), batch_size=256,
                                         collate_fn=lambda batch: batch)
    loops = {"plain": lambda: plain(loader), "Lightning": lambda: lightning(loader, False),
             "Lightning + self.log": lambda: lightning(loader, True)}
    names = list(loops)
    times: dict[str, list[float]] = {name: [] for name in names}
    for repeat in range(args.repeats):
        for name in names[repeat % len(names):] + names[:repeat % len(names)]:
            times[name].append(loops[name]())
            print(f"repeat {repeat} {name}: {1000 * times[name][-1] / args.steps:.2f} ms/step", flush=True)
    per_step = {name: 1000 * statistics.median(values) / args.steps for name, values in times.items()}
    print(f"\nMLP 784-400-400-10, Adam, batches of 256, {args.steps} steps, {args.threads} torch threads; "
          f"median of {args.repeats}")
    print("| loop | ms per step | added to plain |\n|---|---|---|")
    for name in names:
        print(f"| {name} | {per_step[name]:.2f} | {per_step[name] - per_step['plain']:+.2f} |")
    from pipeline.provenance import git_state, machine

    commit, dirty = git_state(ROOT)
    out = ROOT / "results" / "bench" / "lightning_step_overhead.json"
    out.write_text(json.dumps({"steps": args.steps, "repeats": args.repeats, "threads": args.threads,
                               "seconds": times, "ms_per_step": per_step, "git_commit": commit,
                               "git_dirty": dirty, "machine": machine(),
                               "torch": torch.__version__,
                               "pytorch_lightning": __import__("pytorch_lightning").__version__}, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
