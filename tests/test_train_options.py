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


def test_every_choice_of_the_train_section_is_one_lightning_accepts():
    """The spec lists Lightning's choices by hand (validation stays fast, without importing
    Lightning): an upgrade of Lightning that drops or renames one fails here."""
    import inspect
    import typing

    from lightning_fabric.connector import _PRECISION_INPUT_STR
    from pytorch_lightning.accelerators import AcceleratorRegistry
    from pytorch_lightning.strategies import StrategyRegistry

    from pipeline.spec.components import Accelerator, Precision, Strategy

    assert set(typing.get_args(Strategy)) - {"auto"} <= set(StrategyRegistry.available_strategies())
    assert set(typing.get_args(Precision)) <= set(typing.get_args(_PRECISION_INPUT_STR))
    assert set(typing.get_args(Accelerator)) - {"auto", "gpu"} <= set(AcceleratorRegistry.available_accelerators())
    from pipeline.stages.train import trainer_options

    spec = ExperimentSpec(name="o", model={"kind": "swav"}, train=TrainSpec(val_check_interval=0.5))
    assert set(trainer_options(spec)) <= set(inspect.signature(pl.Trainer).parameters)


def test_accumulated_batches_step_the_optimiser_once_per_group(tmp_path):
    spec = ExperimentSpec(name="a", model={"kind": "swav"},
                          train=TrainSpec(max_epochs=1, accumulate_grad_batches=2, accelerator="cpu"))
    trainer = build_trainer(spec, default_root_dir=tmp_path, enable_checkpointing=False, logger=False,
                            enable_progress_bar=False)
    model = Steep()
    trainer.fit(model, DataLoader(TensorDataset(torch.ones(4, 4)), batch_size=1))
    assert trainer.global_step == 2  # 4 batches, 2 per step
    # Lightning averages a group's gradients (each batch's loss / 2): each step moves w by 1, as one
    # batch twice the size would; without accumulation, 4 steps would move it by 4.
    assert model.w.detach().tolist() == pytest.approx([-2.0] * 4)


def test_lightning_options_reach_the_trainer(tmp_path):
    spec = ExperimentSpec(name="v", model={"kind": "swav"},
                          train=TrainSpec(val_check_interval=0.25, precision="bf16-true", accelerator="cpu",
                                          devices=[0] if torch.cuda.is_available() else 1))
    trainer = build_trainer(spec, default_root_dir=tmp_path, logger=False)
    assert trainer.val_check_interval == 0.25
    assert trainer.precision == "bf16-true"


@pytest.mark.parametrize("devices", [0, -2, [], [1, 1], [-1]])
def test_devices_that_name_no_device_are_refused(devices):
    with pytest.raises(ValueError, match="devices"):
        TrainSpec(devices=devices)


def test_a_setting_lightning_refuses_is_one_message_naming_the_section(tmp_path):
    from pipeline.errors import PipelineError

    spec = ExperimentSpec(name="r", model={"kind": "swav"}, train=TrainSpec(accelerator="tpu"))
    with pytest.raises(PipelineError, match="train section"):
        build_trainer(spec, default_root_dir=tmp_path, logger=False)


def test_compile_keeps_the_weights_names_and_the_hash_of_eager(tmp_path):
    from pipeline.spec.experiment import spec_hash
    from pipeline.stages.train import compile_network

    eager = ExperimentSpec(name="e", model={"kind": "swav"})
    assert spec_hash(eager.model_copy(update={"train": TrainSpec(compile=False)})) == spec_hash(eager)
    compiled = ExperimentSpec(name="e", model={"kind": "swav"}, train=TrainSpec(compile=True))
    model = nn.Module()
    model.encoder = nn.Linear(3, 2)
    keys = list(model.state_dict())
    compile_network(compiled, model)
    assert model.encoder._compiled_call_impl is not None
    assert list(model.state_dict()) == keys


def test_a_cpu_only_kind_trains_on_the_cpu_and_refuses_a_gpu():
    from pydantic import ValidationError

    from pipeline.stages.train import trainer_options

    spec = ExperimentSpec(name="d", data={"dataset": "reward_magnitudes"}, model={"kind": "distributional_td"})
    assert spec.train.accelerator == "auto" and trainer_options(spec)["accelerator"] == "cpu"
    swav = ExperimentSpec(name="s", model={"kind": "swav"})
    assert trainer_options(swav)["accelerator"] == "auto"  # others keep Lightning's choice
    with pytest.raises(ValidationError, match="runs on the CPU"):
        ExperimentSpec(name="n", data={"dataset": "white_signal"}, model={"kind": "nengo"},
                       train={"accelerator": "gpu"})
