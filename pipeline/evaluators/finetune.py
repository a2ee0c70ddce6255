"""Fine-tuning with few labels: what self-supervised pretraining is for.

For each fraction of the labelled training examples (a seeded, class-balanced subset), every
network compared sees exactly the same labels: the pretrained encoder with a linear head,
fine-tuned (the encoder at a lower learning rate); the same architecture from its untrained
initialisation, trained from scratch with the same schedule; and linear probes on the frozen
pretrained and untrained encoders and on the raw input. With `head_init: probe` (LP-FT, Kumar et
al. 2022) each network's head starts as the probe on its own frozen features, so fine-tuning
starts where the probe ends instead of sending a random head's gradients into the encoder. The
epoch (the probe's start included) is chosen on validation accuracy, and the test split is
scored once, with the weights of that epoch.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from pipeline import plots
from pipeline.data.datamodule import model_input
from pipeline.errors import PipelineError
from pipeline.evaluators.context import Context, Headline, TaskResult
from pipeline.evaluators.features import extract_features, linear_probe, raw_input


def balanced_subset(labels: torch.Tensor, fraction: float, num_classes: int, seed: int) -> torch.Tensor:
    """Indices of round(fraction x N) examples, as equal a share of each class as the classes
    allow, drawn by a seeded permutation (the same subset for every network compared)."""
    total = max(num_classes, round(fraction * len(labels)))
    rng = np.random.default_rng(seed)
    by_class = [rng.permutation(np.flatnonzero(labels.numpy() == c)) for c in range(num_classes)]
    share, extra = divmod(total, num_classes)
    chosen = [members[: share + (c < extra)] for c, members in enumerate(by_class)]
    return torch.from_numpy(np.sort(np.concatenate(chosen)))


def shift(x: torch.Tensor, generator: torch.Generator, pixels: int = 2, flip: bool = True) -> torch.Tensor:
    """A random translation of up to `pixels` per example (zero padding), and for images a
    horizontal flip half of the time: batched, one gather."""
    if x.dim() == 3:  # sequences [B, C, L]: shift along time only
        padded = F.pad(x, (pixels, pixels))
        offsets = torch.randint(0, 2 * pixels + 1, (len(x),), generator=generator)
        index = (torch.arange(x.shape[-1])[None, :] + offsets[:, None])[:, None, :].expand(-1, x.shape[1], -1)
        return padded.gather(2, index.to(x.device))
    batch, channels, height, width = x.shape
    padded = F.pad(x, (pixels, pixels, pixels, pixels))
    dy, dx = (torch.randint(0, 2 * pixels + 1, (batch,), generator=generator) for _ in range(2))
    rows = (torch.arange(height)[None, :] + dy[:, None]).to(x.device)
    cols = (torch.arange(width)[None, :] + dx[:, None]).to(x.device)
    out = padded[torch.arange(batch, device=x.device)[:, None, None], :, rows[:, :, None], cols[:, None, :]]
    out = out.permute(0, 3, 1, 2)
    if flip:
        flipped = torch.rand(batch, generator=generator) < 0.5
        out[flipped.to(x.device)] = out[flipped.to(x.device)].flip(-1)
    return out


class Classifier(pl.LightningModule):
    """An encoder with a linear head, trained on labels; keeps the weights of its best epoch on
    validation."""

    def __init__(self, encoder: nn.Module, num_classes: int, lr: float, encoder_lr: float, weight_decay: float,
                 augment: bool, seed: int):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.out_dim, num_classes)
        self.lr, self.encoder_lr, self.weight_decay = lr, encoder_lr, weight_decay
        self.augment = augment
        self.generator = torch.Generator().manual_seed(seed)
        self.best: tuple[float, dict] | None = None
        self.val_history: list[float] = []
        self._correct = self._seen = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))

    def training_step(self, batch, batch_idx):
        x, y = batch["input"], batch["label"]
        x = model_input(x)
        if self.augment:
            x = shift(x, self.generator)
        return F.cross_entropy(self(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch["input"], batch["label"]
        self._correct += (self(model_input(x)).argmax(1) == y).sum().item()
        self._seen += len(y)

    def on_validation_epoch_end(self):
        if self.trainer.sanity_checking:
            self._correct = self._seen = 0
            return
        accuracy = self._correct / max(self._seen, 1)
        self._correct = self._seen = 0
        self.val_history.append(accuracy)
        if self.best is None or accuracy > self.best[0]:
            self.best = (accuracy, copy.deepcopy(self.state_dict()))

    def configure_optimizers(self):
        groups = [{"params": self.encoder.parameters(), "lr": self.encoder_lr},
                  {"params": self.head.parameters(), "lr": self.lr}]
        optimizer = torch.optim.AdamW(groups, weight_decay=self.weight_decay)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(1.0, step / total))))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def _loader(x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool, seed: int):
    from torch.utils.data import DataLoader

    from pipeline.data.datamodule import TensorBatches

    generator = torch.Generator().manual_seed(seed)
    return DataLoader(TensorBatches({"input": x, "label": y}), batch_size=batch_size, shuffle=shuffle,
                      generator=generator, collate_fn=lambda batch: batch, drop_last=False)


@torch.no_grad()
def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: str) -> float:
    model.eval().to(device)
    correct = 0
    for start in range(0, len(y), 256):
        correct += (model(model_input(x[start:start + 256].to(device))).argmax(1).cpu() == y[start:start + 256]).sum()
    return correct.item() / len(y)


def train_classifier(encoder: nn.Module, train, val, task, ctx: Context, encoder_lr: float, seed: int,
                     head=None) -> Classifier:
    """`head`: a ProbeResult to start the head from (its validation accuracy is epoch 0's)."""
    steps_per_epoch = math.ceil(len(train[1]) / task.batch_size)
    epochs = max(task.epochs, math.ceil(task.min_steps / steps_per_epoch))
    pl.seed_everything(seed, workers=True, verbose=False)  # the same head for every network compared
    model = Classifier(encoder, ctx.num_classes, task.lr, encoder_lr, task.weight_decay, task.augment, seed)
    if head is not None:
        with torch.no_grad():
            model.head.weight.copy_(head.weight)
            model.head.bias.copy_(head.bias)
        model.best = (head.val_accuracy, copy.deepcopy(model.state_dict()))
    spec = ctx.spec.train
    trainer = pl.Trainer(max_epochs=epochs, accelerator=spec.accelerator if ctx.device != "cpu" else "cpu",
                         devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, deterministic="warn" if spec.deterministic else False,
                         num_sanity_val_steps=0)
    trainer.fit(model, _loader(*train, task.batch_size, True, seed), _loader(*val, 512, False, seed))
    model.load_state_dict(model.best[1])
    return model


def run(task, ctx: Context) -> TaskResult:
    seed = ctx.spec.seed
    train_x, train_y = ctx.split("train")
    val_x, val_y = (t[: task.val_examples] for t in ctx.split("val"))
    if not len(val_y):
        raise PipelineError(f"{ctx.spec.name}: finetune chooses its epoch on validation examples, and there are "
                            "none (data.val_fraction is 0): set data.val_fraction above 0")
    test_x, test_y = ctx.split("test")
    metrics: dict[str, float] = {}
    curves: dict[str, list[tuple[int, float]]] = {}
    for index, fraction in enumerate(task.fractions):
        key = f"labels_{100 * fraction:g}pct"
        chosen = balanced_subset(train_y, fraction, ctx.num_classes, seed + index)
        train = (train_x[chosen], train_y[chosen])
        arms = {
            "pretrained": (copy.deepcopy(ctx.trained.encoder), task.lr * task.encoder_lr_ratio),
            "scratch": (copy.deepcopy(ctx.initial.encoder), task.lr),
        }
        probes = {}
        # Linear probes on the same labels: the frozen pretrained encoder, the frozen untrained one
        # (the heads the networks start from, with head_init: probe), and the raw input.
        for arm, featurise in (("frozen_probe", lambda x: extract_features(ctx.trained.encoder, x,
                                                                           device=ctx.device)),
                               ("frozen_untrained_probe", lambda x: extract_features(ctx.initial.encoder, x,
                                                                                     device=ctx.device)),
                               ("raw_input_probe", raw_input)):
            probe = linear_probe((featurise(train[0]), train[1]), (featurise(val_x), val_y),
                                 (featurise(test_x), test_y), ctx.num_classes, [1e-2, 1e-3, 1e-4], 150)
            probes[arm] = probe
            metrics[f"{key}/{arm}"] = probe.accuracy
            metrics[f"{key}/{arm}_val"] = probe.val_accuracy
        starts = {"pretrained": probes["frozen_probe"], "scratch": probes["frozen_untrained_probe"]}
        for arm, (encoder, encoder_lr) in arms.items():
            model = train_classifier(encoder.train(), train, (val_x, val_y), task, ctx, encoder_lr, seed + index,
                                     head=starts[arm] if task.head_init == "probe" else None)
            metrics[f"{key}/{arm}"] = _accuracy(model, test_x, test_y, ctx.device)
            metrics[f"{key}/{arm}_val"] = model.best[0]
            curves[f"{key} {arm}"] = list(enumerate(model.val_history, start=1))
            for epoch, accuracy in enumerate(model.val_history, start=1):
                ctx.log_series({f"finetune/{key}/{arm}_val_curve": accuracy}, step=epoch)
        metrics[f"{key}/examples"] = float(len(chosen))
        metrics[f"{key}/gain_over_scratch"] = metrics[f"{key}/pretrained"] - metrics[f"{key}/scratch"]
    pictures = [
        plots.curves(curves, f"{ctx.spec.name}: validation accuracy while fine-tuning", "epoch",
                     ctx.out / "finetune_validation.png"),
        plots.lines({arm: [(100 * f, metrics[f"labels_{100 * f:g}pct/{arm}"]) for f in task.fractions]
                     for arm in ("pretrained", "scratch", "frozen_probe", "raw_input_probe")},
                    f"{ctx.spec.name}: test accuracy with few labels", "labelled training examples (%)",
                    "test accuracy", ctx.out / "finetune_accuracy.png", log_x=True),
    ]
    smallest = f"labels_{100 * min(task.fractions):g}pct"
    return TaskResult(metrics, pictures, Headline(
        f"fine-tuned, {100 * min(task.fractions):g}% labels", metrics[f"{smallest}/pretrained"],
        {"from scratch": metrics[f"{smallest}/scratch"], "frozen probe": metrics[f"{smallest}/frozen_probe"]},
        validation=metrics[f"{smallest}/pretrained_val"],
        baselines_validation={"from scratch": metrics[f"{smallest}/scratch_val"],
                              "frozen probe": metrics[f"{smallest}/frozen_probe_val"]}))
