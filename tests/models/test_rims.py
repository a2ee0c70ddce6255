"""Recurrent independent mechanisms: exactly k modules update per step, the others keep their state
and their cells get no gradient; the batched cells are torch's GRU and LSTM cells; the baselines are
matched in parameters; and the length_generalization task's refusal of a foreign dataset."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from pipeline.models.continuous import RIMsSpec
from pipeline.models.continuous.rims import ModuleCells, RIMs, RIMsCore
from pipeline.spec.load import load

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_exactly_k_modules_update_and_the_others_keep_their_state(cell: str):
    torch.manual_seed(0)
    core = RIMsCore(RIMsSpec(kind="rims", cell=cell, modules=5, active=2, hidden=6), in_dim=3)
    h, c = core.initial(8, "cpu", torch.float32)
    h, c = torch.randn_like(h), (torch.randn_like(c) if c is not None else None)
    new_h, new_c, mask = core.step(torch.randn(8, 3), h, c)
    assert (mask.sum(dim=1) == 2).all()
    changed = (new_h != h).any(dim=2)
    assert torch.equal(changed, mask)  # the active ones moved, the inactive ones are exactly as they were
    if cell == "lstm":
        assert torch.equal((new_c != c).any(dim=2), mask)
    assert len({tuple(row) for row in mask.tolist()}) > 1  # different inputs choose different modules


def test_an_inactive_module_s_cell_gets_no_gradient_from_the_step():
    torch.manual_seed(1)
    core = RIMsCore(RIMsSpec(kind="rims", modules=4, active=2, hidden=5), in_dim=2)
    h = torch.randn(1, 4, 5)
    new_h, _, mask = core.step(torch.randn(1, 2), h, None)
    new_h.sum().backward()
    active = mask[0]
    for weights in (core.cells.w_input, core.cells.w_hidden, core.cells.b_input, core.input_query):
        per_module = weights.grad.flatten(1).abs().sum(dim=1)
        assert (per_module[~active] == 0).all() and (per_module[active] > 0).all()


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_the_batched_cells_are_torch_s_cells(cell: str):
    torch.manual_seed(2)
    cells = ModuleCells(cell, modules=3, in_dim=4, hidden=5)
    x, h, c = torch.randn(2, 3, 4), torch.randn(2, 3, 5), torch.randn(2, 3, 5)
    new_h, new_c = cells(x, h, c)
    for k in range(3):
        reference = (nn.GRUCell if cell == "gru" else nn.LSTMCell)(4, 5)
        with torch.no_grad():
            reference.weight_ih.copy_(cells.w_input[k].T)
            reference.weight_hh.copy_(cells.w_hidden[k].T)
            reference.bias_ih.copy_(cells.b_input[k])
            reference.bias_hh.copy_(cells.b_hidden[k])
        if cell == "gru":
            assert torch.allclose(reference(x[:, k], h[:, k]), new_h[:, k], atol=1e-6)
        else:
            ref_h, ref_c = reference(x[:, k], (h[:, k], c[:, k]))
            assert torch.allclose(ref_h, new_h[:, k], atol=1e-6) and torch.allclose(ref_c, new_c[:, k], atol=1e-6)


def test_rims_classifies_sequences_of_any_length_and_its_baselines_match_its_parameters():
    from pipeline import plugins
    from pipeline.spec.components import TrainSpec

    def built(name: str):
        spec = load(ROOT / "specs" / f"{name}.yaml")
        model = plugins.models()[spec.model.kind].load_class()(spec.model, TrainSpec(), (4, 49), 10)
        return model, sum(p.numel() for p in model.parameters())

    rims, size = built("rims_seq_fmnist")
    assert isinstance(rims, RIMs)
    for length in (49, 144):
        assert rims.classify(torch.rand(2, 4, length)).shape == (2, 10)
    for baseline in ("lstm_seq_fmnist", "gru_seq_fmnist"):
        assert abs(built(baseline)[1] - size) / size < 0.02


def test_length_generalization_lists_only_longer_versions_of_its_data():
    from pydantic import ValidationError

    from pipeline.models.ood import LengthGeneralizationSpec

    assert LengthGeneralizationSpec().datasets() == ("seq_fmnist_16", "seq_fmnist_19", "seq_fmnist_24")
    with pytest.raises(ValidationError):
        LengthGeneralizationSpec(lengths=["seq_fmnist_14"])


def test_sequences_read_four_pixels_a_step_in_raster_order():
    import numpy as np

    from pipeline.models.ood.data import pixel_sequences, resize_bilinear

    images = np.random.default_rng(0).integers(0, 256, (2, 1, 28, 28)).astype(np.uint8)
    for side, steps in ((14, 49), (19, 91)):
        sequences = pixel_sequences(images, side)
        assert sequences.shape == (2, 4, steps)
        flat = np.rint(resize_bilinear(images[:, 0] / 255.0, side) * 255).reshape(2, -1)
        assert np.array_equal(sequences.transpose(0, 2, 1).reshape(2, -1)[:, :side * side], flat)
        assert not sequences.transpose(0, 2, 1).reshape(2, -1)[:, side * side:].any()  # the padding is black
