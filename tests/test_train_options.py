"""Options of the spec's `train` section that reach Lightning's Trainer through `build_trainer`."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from pipeline.models.continuous import ESNSpec
from pipeline.models.continuous.esn import ESN
from pipeline.spec.experiment import ExperimentSpec, TrainSpec
from pipeline.stages.train import build_trainer


class Steep(pl.LightningModule):
    """One weight vector and a loss whose gradient has norm 1000: plain SGD at lr 1."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(4))

    def training_step(self, batch, batch_idx):
        return (self.w * batch[0]).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=1.0)


@pytest.mark.parametrize("clip", [None, 0.5])
def test_gradient_clip_norm_bounds_the_step(tmp_path, clip):
    spec = ExperimentSpec(name="c", model={"kind": "swav"},
                          train=TrainSpec(max_epochs=1, gradient_clip_norm=clip, accelerator="cpu"))
    trainer = build_trainer(spec, default_root_dir=tmp_path, enable_checkpointing=False, logger=False,
                            enable_progress_bar=False)
    model = Steep()
    data = DataLoader(TensorDataset(torch.full((1, 4), 500.0)), batch_size=1)  # gradient (500, ...): norm 1000
    trainer.fit(model, data)
    step = model.w.detach().norm().item()
    assert step == pytest.approx(1000.0 if clip is None else clip, rel=1e-5)


def test_an_esn_refuses_gradient_clipping():
    with pytest.raises(ValueError, match="gradient_clip_norm"):
        ESN(ESNSpec(kind="esn", units=10), TrainSpec(gradient_clip_norm=1.0), (1, 20), 3)
