"""Few-label fine-tuning: the labelled subset and the augmentation; the whole task runs in the chain test."""

from __future__ import annotations

import torch

from pipeline.evaluators.finetune import balanced_subset, shift


def test_the_subset_is_class_balanced_seeded_and_the_same_for_every_network():
    labels = torch.arange(1000) % 10
    chosen = balanced_subset(labels, 0.05, 10, seed=3)
    assert len(chosen) == 50
    assert torch.bincount(labels[chosen]).tolist() == [5] * 10
    assert torch.equal(chosen, balanced_subset(labels, 0.05, 10, seed=3))
    assert not torch.equal(chosen, balanced_subset(labels, 0.05, 10, seed=4))
    uneven = balanced_subset(labels, 0.013, 10, seed=0)  # 13 examples: three classes get a second
    assert sorted(torch.bincount(labels[uneven], minlength=10).tolist()) == [1] * 7 + [2] * 3


def test_shift_moves_each_image_by_at_most_two_pixels_and_keeps_its_content():
    images = torch.zeros(64, 1, 12, 12)
    images[:, 0, 5, 5] = 1.0
    moved = shift(images, torch.Generator().manual_seed(0), flip=False)
    rows, cols = (moved[:, 0] == 1).nonzero()[:, 1:].T
    assert moved.sum() == 64
    assert rows.sub(5).abs().max() <= 2
    assert cols.sub(5).abs().max() <= 2
    assert len({(r, c) for r, c in zip(rows.tolist(), cols.tolist(), strict=True)}) > 5
    signals = torch.zeros(16, 1, 20)
    signals[:, 0, 10] = 1.0
    moved = shift(signals, torch.Generator().manual_seed(0))
    assert moved.shape == signals.shape
    assert moved.sum() == 16
    assert (moved[:, 0].argmax(dim=1) - 10).abs().max() <= 2
