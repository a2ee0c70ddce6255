"""SwAV: Sinkhorn codes, prototype normalisation, the loss at chance, real training steps."""

from __future__ import annotations

import math

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from lightly.loss import SwaVLoss

from pipeline import plugins
from pipeline.data.datamodule import TensorDataModule
from pipeline.models.swav import SwAVSpec
from pipeline.models.swav.loss import prototype_usage, sinkhorn_codes
from pipeline.models.swav.module import SwAV
from pipeline.spec.experiment import DataSpec, TrainSpec

SMALL = SwAVSpec(kind="swav", prototypes=12, projection_hidden_dim=32, projection_dim=16,
                 freeze_prototypes_steps=0,
                 backbone={"widths": [8, 16]},
                 multicrop={"small_crops": 2})


def test_registry_builds_swav():
    assert plugins.models()["swav"].load_class() is SwAV


def test_sinkhorn_codes_are_doubly_stochastic():
    torch.manual_seed(0)
    batch, k = 64, 16
    scores = F.normalize(torch.randn(batch, 8), dim=1) @ F.normalize(torch.randn(k, 8), dim=1).T
    codes = sinkhorn_codes(scores, epsilon=0.05, iterations=50)
    assert codes.shape == (batch, k)
    assert (codes >= 0).all()
    assert torch.allclose(codes.sum(dim=1), torch.ones(batch), atol=1e-4)
    # Equipartition: every prototype gets an equal share of the batch.
    assert torch.allclose(codes.sum(dim=0), torch.full((k,), batch / k), atol=1e-2)
    # With the paper's 3 iterations the last normalisation, over each sample's codes, is exact
    # and the prototypes' shares are already closer to equal than the raw softmax's.
    three = sinkhorn_codes(scores, epsilon=0.05, iterations=3)
    assert torch.allclose(three.sum(dim=1), torch.ones(batch), atol=1e-4)
    softmax_shares = torch.softmax(scores / 0.05, dim=1).sum(dim=0)
    assert (three.sum(dim=0) - batch / k).abs().max() < (softmax_shares - batch / k).abs().max()


def test_loss_of_random_inputs_is_near_ln_k():
    torch.manual_seed(0)
    k, dim, batch = 30, 128, 256
    prototypes = F.normalize(torch.randn(k, dim), dim=1)

    def scores() -> torch.Tensor:
        return F.normalize(torch.randn(batch, dim), dim=1) @ prototypes.T

    tau = 0.1
    loss = SwaVLoss(temperature=tau)([scores(), scores()], [scores() for _ in range(4)])
    # Unrelated views: the codes q are independent of the predictions p = softmax(s / tau), so
    # E[-log p_k] = E[logsumexp(s / tau)] - E[s_k / tau] ~ ln K + var(s / tau) / 2, where a
    # random unit vector's score against a unit prototype has variance 1 / dim.
    expected = math.log(k) + 1 / (dim * tau**2) / 2
    assert abs(loss.item() - expected) < 0.02 * expected


def test_prototype_usage():
    assert prototype_usage(torch.eye(4)) == 1.0
    assert prototype_usage(torch.tensor([[1.0, 0, 0, 0]] * 5)) == 0.25


def _fit(tiny_splits, spec: SwAVSpec, **trainer):
    pl.seed_everything(0, verbose=False)
    model = SwAV(spec, TrainSpec(max_epochs=1), (1, 28, 28), 10)
    data = TensorDataModule(DataSpec(batch_size=16), seed=0, splits=tiny_splits)
    options = dict(accelerator="cpu", logger=False, enable_checkpointing=False,
                   enable_progress_bar=False, enable_model_summary=False)
    options.update(trainer)
    pl.Trainer(**options).fit(model, datamodule=data)
    return model


def test_a_real_training_step_changes_the_encoder_and_keeps_prototypes_unit_norm(tiny_splits):
    pl.seed_everything(0, verbose=False)
    before = SwAV(SMALL, TrainSpec(), (1, 28, 28), 10).encoder.state_dict()
    model = _fit(tiny_splits, SMALL, max_steps=1, num_sanity_val_steps=0, limit_val_batches=0)
    after = model.encoder.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before if after[k].is_floating_point())
    norms = model.prototypes.heads[0].weight.norm(dim=1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)


def test_prototypes_stay_frozen_for_the_first_steps(tiny_splits):
    spec = SMALL.model_copy(update={"freeze_prototypes_steps": 100})
    pl.seed_everything(0, verbose=False)
    initial = SwAV(spec, TrainSpec(), (1, 28, 28), 10).prototypes.heads[0].weight.clone()
    model = _fit(tiny_splits, spec, max_steps=2, num_sanity_val_steps=0, limit_val_batches=0)
    assert torch.allclose(model.prototypes.heads[0].weight, initial, atol=1e-6)


def test_fast_dev_run_with_a_queue(tiny_splits):
    spec = SMALL.model_copy(update={"queue_length": 32, "queue_start_epoch": 0})
    model = _fit(tiny_splits, spec, fast_dev_run=2)
    assert int(model.queue_filled) == 32
    assert model.diagnostics() == {"collapse": "false"}


def test_training_is_deterministic_on_cpu(tiny_splits):
    first = _fit(tiny_splits, SMALL, max_steps=3, num_sanity_val_steps=0, limit_val_batches=0,
                 deterministic=True)
    second = _fit(tiny_splits, SMALL, max_steps=3, num_sanity_val_steps=0, limit_val_batches=0,
                  deterministic=True)
    for key, value in first.state_dict().items():
        assert torch.equal(value, second.state_dict()[key]), key
