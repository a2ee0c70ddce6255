"""Choose k-winners' inference factor for specs/sparse_cnn_fmnist.yaml on validation: one training of
its network (seed 0, its optimiser, batches and epochs), scored on the validation split (clean
accuracy, and the noise score over its 11 levels of pixel noise) with 1x, 1.5x and 2x the winners at
inference. The factor changes nothing in training, so one training serves the three.

    python bench/sparse_inference_factor.py   (writes results/bench/sparse_inference_factor.json)
"""

from __future__ import annotations

import json
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
FACTORS = (1.0, 1.5, 2.0)
LEVELS = [0.05 * i for i in range(11)]


def main() -> None:
    from pipeline.data.datamodule import load_splits
    from pipeline.evaluators.noise_robustness import with_pixels_set
    from pipeline.models.sparse.module import SparseCNN
    from pipeline.spec.load import load

    spec = load(ROOT / "specs" / "sparse_cnn_fmnist.yaml")
    pl.seed_everything(0)
    splits = load_splits(spec.data, 0, root=ROOT / "data")
    model = SparseCNN(spec.model, spec.train, splits.input_shape, splits.num_classes)
    optimizer = torch.optim.Adam(model.parameters(), spec.train.optimizer.lr)
    x, y = splits.train["input"], splits.train["label"]
    size = spec.data.batch_size
    for _ in range(spec.train.max_epochs):
        model.train()
        order = torch.randperm(len(x))
        for start in range(0, len(x) - size + 1, size):
            batch = order[start:start + size]
            loss = F.cross_entropy(model.classify(x[batch].float() / 255), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.on_train_epoch_end()
    model.eval()
    val_x, val_y = splits.val["input"].float() / 255, splits.val["label"]
    found = {}
    for factor in FACTORS:
        for layer in model.kwinners():
            layer.spec = layer.spec.model_copy(update={"k_inference_factor": factor})
        with torch.no_grad():
            accuracies = [(model.classify(with_pixels_set(val_x, 1, level, 0.75, torch.Generator().manual_seed(i)))
                           .argmax(1) == val_y).float().mean().item() for i, level in enumerate(LEVELS)]
        found[factor] = {"val_accuracy": accuracies[0], "val_noise_score": sum(accuracies) * len(val_y)}
        print(factor, found[factor], flush=True)
    out = ROOT / "results" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    (out / "sparse_inference_factor.json").write_text(json.dumps(found, indent=1) + "\n")


if __name__ == "__main__":
    main()
