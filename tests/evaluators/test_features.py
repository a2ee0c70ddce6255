"""Probes score features the same way whatever produced them."""

from __future__ import annotations

import torch

from pipeline.evaluators.features import extract_features, knn_accuracy, linear_probe, raw_input


def blobs(n: int, dim: int = 20, classes: int = 4, spread: float = 0.3, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    centers = torch.randn(classes, dim, generator=torch.Generator().manual_seed(99)) * 3
    labels = torch.arange(n) % classes
    return centers[labels] + spread * torch.randn(n, dim, generator=generator), labels


def shifted(n: int, seed: int, dim: int = 60, shift: float = 0.15):
    """Two classes of unit Gaussians whose means differ by a weak shift in every dimension."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    return torch.randn(n, dim, generator=generator) + shift * (2 * labels[:, None] - 1), labels


def test_linear_probe_separates_separable_data_and_picks_by_validation():
    result = linear_probe(blobs(400), blobs(100, seed=1), blobs(200, seed=2), 4, [1e-2, 1e-4], 50)
    assert result.accuracy == 1.0
    assert result.predictions.shape == (200,)
    # A decay so strong that the weights vanish leaves the bias, the training prior (class 0 is
    # 100 of 160 here): class 0 everywhere, 25% on the balanced validation split; the weak one wins.
    x, y = blobs(400)
    skewed = (y == 0) | (torch.arange(400) % 20 < 4)
    result = linear_probe((x[skewed], y[skewed]), blobs(100, seed=1), blobs(200, seed=2), 4, [1e3, 1e-4], 50)
    assert result.weight_decay == 1e-4
    assert result.val_accuracy == 1.0
    # As many samples as dimensions and a weak signal: the weak decay fits the noise (71.75% on
    # validation against 78.25%), so the strong one wins.
    result = linear_probe(shifted(60, 0), shifted(400, 1), shifted(400, 2), 2, [1.0, 1e-6], 150)
    assert result.weight_decay == 1.0
    assert result.val_accuracy > 0.75


def test_linear_probe_is_at_chance_on_noise():
    noise = lambda seed: (torch.randn(400, 20, generator=torch.Generator().manual_seed(seed)),  # noqa: E731
                          torch.randint(0, 4, (400,), generator=torch.Generator().manual_seed(seed + 9)))
    result = linear_probe(noise(0), noise(1), noise(2), 4, [1e-3], 50)
    assert 0.1 < result.accuracy < 0.45


def test_knn_votes_of_the_nearest_neighbours():
    accuracy, predictions = knn_accuracy(blobs(400), blobs(200, seed=2), 4, k=5)
    assert accuracy == 1.0
    train = (torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1]))
    _, predicted = knn_accuracy(train, (torch.tensor([[0.9, 0.1], [0.2, 0.8]]), torch.tensor([0, 1])), 2, k=1)
    assert predicted.tolist() == [0, 1]


def test_feature_extraction_in_eval_mode_and_raw_input():
    encoder = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    images = torch.randint(0, 256, (10, 1, 2, 2), dtype=torch.uint8)
    features = extract_features(encoder, images, batch_size=3)
    assert features.shape == (10, 3)
    assert encoder.training
    assert torch.allclose(raw_input(images), images.flatten(1).float() / 255)


def test_the_probe_returns_its_classifier_on_the_raw_features():
    """The standardisation is folded into the returned layer: a network head started from it
    predicts exactly what the probe predicted (what few-label fine-tuning starts from)."""
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(300) % 3
    features = torch.randn(300, 5, generator=generator) * torch.tensor([1.0, 10.0, 0.1, 3.0, 1.0]) + 4.0
    features[:, 0] += 3 * labels
    split = (features, labels)
    result = linear_probe(split, split, split, 3, [1e-3])
    predicted = (features @ result.weight.T + result.bias).argmax(1)
    assert torch.equal(predicted, result.predictions)
    assert result.accuracy > 0.8
