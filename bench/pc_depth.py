"""Predictive coding against backprop on Fashion-MNIST MLPs as the depth grows.

    python bench/pc_depth.py [--depths 3 6 10] [--epochs 2] [--seeds 0] [--train-subset 10000]

For each depth (weight layers: depth - 1 hidden layers of `--width` units), seed and rule, the same
network (the `feedforward` family's module, same initial weights for both rules) is trained for the
same epochs with the same optimiser (Adam, constant lr, batch `--batch-size`): by backprop of the
cross-entropy, and by predictive coding (`--steps` inference steps of `--inference-lr`; standard
predictive coding unless `--fixed-prediction`). Prints, per depth, the validation and test
accuracy of each (mean over seeds), the gap (PC - BP), each rule's wall time per epoch and the
overhead (PC time / BP time); writes results/bench/pc_depth.json. Nothing is chosen on the test
split: settings are compared on validation, the test column is reported once at the end.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from pipeline.data.datamodule import load_splits, model_input
from pipeline.models.predictive_coding import FeedforwardSpec
from pipeline.models.predictive_coding.module import Feedforward
from pipeline.spec.experiment import DataSpec, TrainSpec

ROOT = Path(__file__).resolve().parent.parent


@torch.no_grad()
def accuracy(model: Feedforward, inputs: torch.Tensor, labels: torch.Tensor) -> float:
    correct = sum((model.classify(model_input(inputs[i:i + 1024])).argmax(1) == labels[i:i + 1024]).sum().item()
                  for i in range(0, len(inputs), 1024))
    return correct / len(labels)


def train(model: Feedforward, splits, epochs: int, batch_size: int, lr: float, seed: int) -> list[float]:
    """Wall time of each epoch (training steps only)."""
    x, y = splits.pair("train")
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    times = []
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        started = time.perf_counter()
        for start in range(0, len(x), batch_size):
            index = order[start:start + batch_size]
            inputs, labels = model_input(x[index]), y[index]
            optimiser.zero_grad(set_to_none=True)
            if model.spec.learning == "backprop":
                model.loss(model.classify(inputs), labels).backward()
            else:
                for name, update in model.pc_updates(model.relax(inputs, labels)).items():
                    model.get_parameter(name).grad = update
            optimiser.step()
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--depths", type=int, nargs="+", default=[3, 6, 10], help="Weight layers.")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--train-subset", type=int, default=10000, help="0: the whole training split.")
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--activation", default="tanh", choices=["tanh", "relu", "gelu", "sigmoid"])
    parser.add_argument("--steps", type=int, default=20, help="Inference steps T.")
    parser.add_argument("--inference-lr", type=float, default=0.2)
    parser.add_argument("--fixed-prediction", action="store_true")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam's learning rate, both rules.")
    parser.add_argument("--out", default=str(ROOT / "results" / "bench" / "pc_depth.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)

    rows = []
    for depth in args.depths:
        runs = {"backprop": [], "predictive_coding": []}
        for seed in args.seeds:
            data = DataSpec(dataset="fashion_mnist", train_subset=args.train_subset or None)
            splits = load_splits(data, seed)
            for learning in runs:
                spec = FeedforwardSpec(kind="feedforward", widths=[args.width] * (depth - 1),
                                       activation=args.activation, learning=learning, inference_steps=args.steps,
                                       inference_lr=args.inference_lr, fixed_prediction=args.fixed_prediction)
                torch.manual_seed(seed)  # the same initial weights for both rules
                model = Feedforward(spec, TrainSpec(), splits.input_shape, splits.num_classes)
                times = train(model, splits, args.epochs, args.batch_size, args.lr, seed)
                result = {"seed": seed, "val": accuracy(model, *splits.pair("val")),
                          "test": accuracy(model, *splits.pair("test")), "epoch_s": statistics.median(times)}
                runs[learning].append(result)
                print(f"depth {depth} seed {seed} {learning}: validation {result['val']:.4f}, test "
                      f"{result['test']:.4f}, {result['epoch_s']:.1f} s/epoch", flush=True)

        def mean(learning: str, key: str, runs: dict = runs) -> float:
            return statistics.fmean(r[key] for r in runs[learning])

        rows.append({"depth": depth, "pc_val": mean("predictive_coding", "val"), "bp_val": mean("backprop", "val"),
                     "pc_test": mean("predictive_coding", "test"), "bp_test": mean("backprop", "test"),
                     "pc_epoch_s": mean("predictive_coding", "epoch_s"), "bp_epoch_s": mean("backprop", "epoch_s"),
                     "runs": runs})
        rows[-1]["gap_test"] = rows[-1]["pc_test"] - rows[-1]["bp_test"]
        rows[-1]["overhead"] = rows[-1]["pc_epoch_s"] / rows[-1]["bp_epoch_s"]

    print(f"\nFashion-MNIST, MLP width {args.width} {args.activation}, {args.epochs} epochs, train subset "
          f"{args.train_subset or 'all'}, seeds {args.seeds}, PC: T={args.steps}, inference_lr={args.inference_lr}, "
          f"fixed_prediction={args.fixed_prediction}")
    print("| depth | PC val | BP val | PC test | BP test | gap (test) | PC s/epoch | BP s/epoch | overhead |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['depth']} | {r['pc_val']:.4f} | {r['bp_val']:.4f} | {r['pc_test']:.4f} | {r['bp_test']:.4f} | "
              f"{100 * r['gap_test']:+.2f} pt | {r['pc_epoch_s']:.1f} | {r['bp_epoch_s']:.2f} | "
              f"{r['overhead']:.1f}x |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"settings": vars(args), "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
