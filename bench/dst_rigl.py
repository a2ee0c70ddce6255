"""Our RigL (`train.sparsity`, pipeline/sparsity.py) against rigl-torch's `RigLScheduler` at the same
settings, on the same network, data, optimiser, batches and initial weights.

    python bench/dst_rigl.py [--seeds 0 1 2] [--epochs 3] [--threads 2]

(Not named after the peer: a script called rigl_torch.py would shadow the package it imports.)

The network: specs/dense_cnn_fmnist.yaml's CNN (two 5x5 convs of 16 and 32 channels, a hidden layer
of 300, a linear head), on Fashion-MNIST's training split (the spec's seeded split, 10% held out),
Adam at 1e-3, batches of 64, the same shuffling on both sides. Sparsity: rigl-torch supports only
uniform densities with the first layer dense, so both sides run that: 10% density in every other
layer (the linear layers included: `ignore_linear_layers=False`), an update every 100 steps, a drop
fraction of 0.3 decaying by a cosine to 0 at 75% of the steps.

One difference of protocol remains and is theirs by design: rigl-torch skips the optimizer step on
an update step (its scheduler returns False), ours takes it after the update (as Lightning's loop
does). Each side is timed over its whole training loop (updates included; data loading is the same
tensors).

Printed and written to results/bench/dst_rigl.{json,txt}: test accuracy, the overall density of
the sparse layers every 100 steps (both sides must trace the same curve), the count of mask updates,
and the wall time, for each seed and side.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
DENSITY, INTERVAL, ALPHA, END = 0.1, 100, 0.3, 0.75
BATCH = 64


def network(seed: int, splits):
    from pipeline.models.sparse import SparseCNNSpec
    from pipeline.models.sparse.module import SparseCNN
    from pipeline.spec.components import TrainSpec

    torch.manual_seed(seed)
    return SparseCNN(SparseCNNSpec(kind="sparse_cnn", channels=[16, 32], hidden=300), TrainSpec(),
                     splits.input_shape, splits.num_classes)


def mask_density(masks: list[torch.Tensor]) -> float:
    """The share of the sparse layers' weights their masks allow (None: a dense layer, left out)."""
    kept = [m for m in masks if m is not None]
    return sum(int(m.sum()) for m in kept) / sum(m.numel() for m in kept)


def sparse_density(weights: list[torch.Tensor]) -> float:
    return sum(int((w != 0).sum()) for w in weights) / sum(w.numel() for w in weights)


def train(side: str, seed: int, splits, epochs: int) -> dict:
    from pipeline.sparsity import DynamicSparsity, sparse_layers
    from pipeline.spec.components import SparsitySpec

    model = network(seed, splits)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = splits.train["input"], splits.train["label"]
    steps_per_epoch = len(x) // BATCH
    total = steps_per_epoch * epochs
    layers = sparse_layers(model)
    watched = [layer.weight for layer in list(layers.values())[1:]]  # the first layer is dense on both sides
    if side == "ours":
        callback = DynamicSparsity(SparsitySpec(method="rigl", density=DENSITY, update_interval=INTERVAL,
                                                drop_fraction=ALPHA, end_fraction=END, distribution="uniform",
                                                dense_first_layer=True), seed=seed)
        callback.on_fit_start(SimpleNamespace(estimated_stepping_batches=total), model)
    else:
        from rigl_torch.RigL import RigLScheduler

        scheduler = RigLScheduler(model, optimizer, dense_allocation=DENSITY, T_end=int(END * total),
                                  sparsity_distribution="uniform", ignore_linear_layers=False, delta=INTERVAL,
                                  alpha=ALPHA)
    curve, masks_curve, step, updates = [], [], 0, 0
    order_generator = torch.Generator().manual_seed(seed)
    started = time.perf_counter()
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(x), generator=order_generator)
        for index in range(steps_per_epoch):
            batch = order[index * BATCH:(index + 1) * BATCH]
            loss = F.cross_entropy(model.classify(x[batch].float() / 255), y[batch])
            optimizer.zero_grad()
            loss.backward()
            if side == "ours":
                callback.on_before_optimizer_step(SimpleNamespace(global_step=step), model, optimizer)
                optimizer.step()
                callback.on_train_batch_end(None, model, None, None, index)
            elif scheduler():
                optimizer.step()
            step += 1
            if step % INTERVAL == 0:
                curve.append((step, round(sparse_density(watched), 5)))
                masks = ([callback.masks[name] for name in list(layers)[1:]] if side == "ours"
                         else list(scheduler.backward_masks))
                masks_curve.append((step, round(mask_density(masks), 5)))
        model.on_train_epoch_end()
    wall = time.perf_counter() - started
    updates = callback.updates if side == "ours" else scheduler.rigl_steps
    model.eval()
    with torch.no_grad():
        tx, ty = splits.test["input"], splits.test["label"]
        accuracy = sum(int((model.classify(tx[i:i + 1000].float() / 255).argmax(1) == ty[i:i + 1000]).sum())
                       for i in range(0, len(tx), 1000)) / len(tx)
    return {"accuracy": accuracy, "density_curve": curve, "mask_density_curve": masks_curve,
            "final_density": sparse_density(watched),
            "updates": updates, "wall_s": round(wall, 1), "steps": step}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from pipeline.data.datamodule import load_splits
    from pipeline.provenance import git_state, machine
    from pipeline.spec.load import load

    spec = load(ROOT / "specs" / "dense_cnn_fmnist.yaml")
    results: dict[str, list[dict]] = {"ours": [], "rigl_torch": []}
    for seed in args.seeds:
        splits = load_splits(spec.data, seed, root=ROOT / "data")
        for side in results:
            results[side].append(train(side, seed, splits, args.epochs))
            run = results[side][-1]
            print(f"seed {seed} {side:10s} accuracy {run['accuracy']:.4f} density {run['final_density']:.4f} "
                  f"updates {run['updates']} wall {run['wall_s']} s", flush=True)
    commit, dirty = git_state(ROOT)
    same_curve = all(a["mask_density_curve"] == b["mask_density_curve"]
                     for a, b in zip(*results.values(), strict=True))

    def cell(side: str, key: str, scale: float = 1.0, digits: int = 1) -> str:
        values = [run[key] * scale for run in results[side]]
        spread = f" ± {statistics.stdev(values):.{digits}f}" if len(values) > 1 else ""
        return f"{statistics.mean(values):.{digits}f}{spread}"

    lines = [f"RigL, ours vs rigl-torch: CNN 16-32-300 on Fashion-MNIST, {args.epochs} epochs, density {DENSITY} "
             f"(uniform, first layer dense), update every {INTERVAL} steps, drop {ALPHA} cosine to {END}; seeds "
             f"{args.seeds}; commit {commit[:12]} (dirty: {dirty}); {machine()['cpu']}, {args.threads} threads",
             "",
             "| side | test accuracy | density of the sparse layers | mask updates | wall time (s) |",
             "|---|---|---|---|---|"]
    for side in results:
        lines.append(f"| {side} | {cell(side, 'accuracy', 100, 2)}% | {cell(side, 'final_density', 1, 4)} | "
                     f"{cell(side, 'updates', 1, 0)} | {cell(side, 'wall_s')} |")
    lines.append("")
    lines.append(f"Mask density every {INTERVAL} steps identical on both sides: {same_curve}. (The share of "
                 "non-zero weights differs after an update: rigl-torch skips the optimizer step there, so its "
                 "grown weights stay zero until the next step; ours takes it.)")
    text = "\n".join(lines)
    print(text)
    out = ROOT / "results" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    (out / "dst_rigl.txt").write_text(text + "\n")
    (out / "dst_rigl.json").write_text(json.dumps({"commit": commit, "dirty": dirty, "machine": machine(),
                                                     "args": vars(args), "results": results,
                                                     "same_density_curve": same_curve}, indent=1) + "\n")


if __name__ == "__main__":
    main()
