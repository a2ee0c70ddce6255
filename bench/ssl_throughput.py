"""SwAV pretraining throughput: our batched-augmentation path against lightly's standard
per-image `SwaVTransform` + DataLoader pipeline, in the same process, on the same images, with
the same model, crops, batch size and optimiser. Both then get the same linear probe.

    python bench/ssl_throughput.py [--images 10000] [--epochs 1] [--batch-size 256]

Prints images/s of each path, their ratio, the probe accuracy of each encoder after the same
number of epochs, and the latency of `pipeline --help`.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import numpy as np
import pytorch_lightning as pl
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from pipeline.data.datamodule import load_splits
from pipeline.evaluators.features import extract_features, linear_probe
from pipeline.models.swav.module import SwAV
from pipeline.spec.load import load


class PerImage(Dataset):
    """The peer's way: each image a PIL image through lightly's SwaVTransform."""

    def __init__(self, images: torch.Tensor, transform):
        self.images, self.transform = images.numpy(), transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        return self.transform(Image.fromarray(self.images[index, 0], mode="L"))


def collate_views(samples):
    return [torch.stack(views) for views in zip(*samples, strict=True)]


def peer_loader(images: torch.Tensor, spec, batch_size: int, workers: int) -> DataLoader:
    from lightly.transforms import SwaVTransform

    crops = spec.model.multicrop
    transform = SwaVTransform(
        crop_sizes=(crops.large_size, crops.small_size),
        crop_counts=(crops.large_crops, crops.small_crops),
        crop_min_scales=(crops.large_scale[0], crops.small_scale[0]),
        crop_max_scales=(crops.large_scale[1], crops.small_scale[1]),
        hf_prob=crops.flip, cj_prob=1.0, cj_strength=1.0, cj_bright=crops.brightness,
        cj_contrast=crops.contrast, cj_sat=0.0, cj_hue=0.0, random_gray_scale=0.0,
        gaussian_blur=0.0, normalize=None,
    )
    return DataLoader(PerImage(images, transform), batch_size=batch_size, shuffle=True, drop_last=True,
                      num_workers=workers, collate_fn=collate_views, persistent_workers=workers > 0)


def train(model: SwAV, batches, lr: float, per_batch, bf16: bool) -> tuple[float, int]:
    """Plain loop, identical for both paths but for how a batch becomes crops."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-6)
    model.train()
    seen, started = 0, time.perf_counter()
    for batch in batches:
        large, small = per_batch(batch)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss, _ = model.crops_loss(large, small)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            model.prototypes.normalize()
        seen += large[0].shape[0]
    return seen / (time.perf_counter() - started), seen


def probe(model: SwAV, splits) -> float:
    features = {name: extract_features(model.encoder, splits.pair(name)[0]) for name in ("train", "val", "test")}
    result = linear_probe((features["train"], splits.pair("train")[1]), (features["val"], splits.pair("val")[1]),
                          (features["test"], splits.pair("test")[1]), splits.num_classes, [1e-3, 1e-4], 150)
    return result.accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", default="specs/quickstart.yaml")
    parser.add_argument("--images", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=1, help="peer DataLoader workers")
    parser.add_argument("--precision", choices=["32-true", "bf16-mixed"], default=None,
                        help="model compute of both paths; default: the spec's train.precision")
    args = parser.parse_args()

    spec = load(args.spec, [f"data.train_subset={args.images}", "model.freeze_prototypes_steps=0"])
    splits = load_splits(spec.data, spec.seed)
    images = splits.train["input"]
    precision = args.precision or spec.train.precision
    bf16 = precision == "bf16-mixed"
    print(f"SwAV, {spec.model.backbone.name} {spec.model.backbone.widths}, crops "
          f"{spec.model.multicrop.large_crops}x{spec.model.multicrop.large_size} + "
          f"{spec.model.multicrop.small_crops}x{spec.model.multicrop.small_size}, batch {args.batch_size}, "
          f"{len(images)} images x {args.epochs} epoch(s), {precision}, {torch.get_num_threads()} threads")

    n_large = spec.model.multicrop.large_crops

    def batched_epoch(model: SwAV) -> float:
        order = torch.randperm(len(images))
        batches = (images[order[i:i + args.batch_size]]
                   for i in range(0, len(images) - args.batch_size + 1, args.batch_size))
        return train(model, batches, spec.train.optimizer.lr,
                     lambda batch: model.multicrop(batch.float().div_(255)), bf16)[0]

    def per_image_epoch(model: SwAV) -> float:
        loader = peer_loader(images, spec, args.batch_size, args.workers)
        return train(model, loader, spec.train.optimizer.lr,
                     lambda views: (views[:n_large], views[n_large:]), bf16)[0]

    results = {}
    for name, epoch in (("batched (ours)", batched_epoch),
                        ("per-image (lightly SwaVTransform)", per_image_epoch)):
        pl.seed_everything(spec.seed, verbose=False)
        model = SwAV(spec.model, spec.train, splits.input_shape, len(splits.classes))
        rates = [epoch(model) for _ in range(args.epochs)]
        results[name] = (float(np.mean(rates)), probe(model, splits))
        print(f"  {name:<36} {results[name][0]:8.1f} images/s   linear probe {results[name][1]:.2%}")

    ours, peer = results["batched (ours)"], results["per-image (lightly SwaVTransform)"]
    print(f"throughput ratio (ours / peer): {ours[0] / peer[0]:.2f}x   (target >= 3x)")
    print(f"probe accuracy difference (ours - peer): {100 * (ours[1] - peer[1]):+.2f} points")

    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pipeline", "--help"], capture_output=True, check=True)
    print(f"`pipeline --help` latency: {1000 * (time.perf_counter() - started):.0f} ms")


if __name__ == "__main__":
    main()
