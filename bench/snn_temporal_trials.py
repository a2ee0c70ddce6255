"""Short trials of the temporal-coding network: its hyperparameters side by side, validation
accuracy after each epoch, everything else equal (data, seed, optimiser).

    python bench/snn_temporal_trials.py                              # the spec's defaults
    python bench/snn_temporal_trials.py tau_syn=1 temperature=1 pulse_strength=2 weight_mean=4 revive_cost=0
    python bench/snn_temporal_trials.py revive_cost=0 --images 5000 --epochs 2 --seed 1

Arguments NAME=VALUE set fields of the `snn_temporal` model spec (validated like a spec file;
dotted names reach nested fields, e.g. encoding.steps=7). A plain Adam loop at a constant
learning rate on the first --images training images, scored on 3000 validation images: the
numbers compare settings with each other, the real run (`dvc repro report@snn_temporal_fmnist`,
all 54k images, cosine schedule) is what reports accuracy. It also prints when the input, hidden
and output spikes come (10/50/90% quantiles) and the share of hidden neurons that fire at all.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import yaml

from pipeline.data.datamodule import load_splits, model_input
from pipeline.spec.load import load_text
from pipeline.stages import build_model


def model_spec(assignments: list[str]) -> dict:
    model: dict = {"kind": "snn_temporal"}
    for assignment in assignments:
        name, _, value = assignment.partition("=")
        if not value:
            raise SystemExit(f"expected NAME=VALUE, got {assignment!r}")
        *path, last = name.split(".")
        node = model
        for part in path:
            node = node.setdefault(part, {})
        node[last] = yaml.safe_load(value)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("assignments", nargs="*", metavar="NAME=VALUE")
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    spec = load_text(yaml.safe_dump({
        "name": "snn_temporal_trial",
        "data": {"dataset": "fashion_mnist", "train_subset": args.images, "batch_size": args.batch_size},
        "model": model_spec(args.assignments),
    }))
    print(spec.model.model_dump_json(), flush=True)
    torch.manual_seed(args.seed)
    splits = load_splits(spec.data, 0)
    net = build_model(spec, splits.input_shape, len(splits.classes))
    images, labels = splits.pair("train")
    val_images, val_labels = (t[:3000] for t in splits.pair("val"))
    optimizer = torch.optim.Adam(net.parameters(), lr=args.lr)

    started = time.perf_counter()
    for epoch in range(args.epochs):
        for batch in torch.randperm(len(labels)).split(args.batch_size):
            loss = net.objective(model_input(images[batch]), labels[batch])[0]
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            correct = sum((net.decide(net.output_times(model_input(x))[1]) == y).sum().item()
                          for x, y in zip(val_images.split(500), val_labels.split(500), strict=True))
            hidden = net.encoder.run(model_input(val_images[:500]))[-1]
        print(json.dumps({"epoch": epoch + 1, "val_accuracy": round(correct / len(val_labels), 4),
                          "hidden_ever_firing": round(torch.isfinite(hidden).any(0).float().mean().item(), 3),
                          "seconds": round(time.perf_counter() - started)}), flush=True)

    quantiles = torch.tensor([0.1, 0.5, 0.9])
    with torch.no_grad():
        times, output = net.output_times(model_input(val_images[:500]))
    for name, layer in [("input", times[0]), *((f"hidden{i}", t) for i, t in enumerate(times[1:], 1)),
                        ("decision", output.amin(dim=1))]:
        fired = layer[torch.isfinite(layer)]
        spread = [round(q, 2) for q in fired.quantile(quantiles).tolist()] if len(fired) else None
        print(f"{name}: {torch.isfinite(layer).float().mean().item():.1%} fire; times at 10/50/90%: {spread}")


if __name__ == "__main__":
    main()
