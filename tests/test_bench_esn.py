"""bench/esn_reservoirpy.py builds reservoirpy's reservoir from our ESN spec: on a tiny reservoir,
both sides realise the spec's hyperparameters alike, and reservoirpy run on our matrices gives our
states (the same update equation)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.models.continuous import ESNSpec
from pipeline.models.continuous.esn import ReservoirCore

pytest.importorskip("reservoirpy")
BENCH = Path(__file__).resolve().parent.parent / "bench" / "esn_reservoirpy.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("esn_reservoirpy_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SPEC = ESNSpec(kind="esn", units=40, spectral_radius=0.8, leak_rate=0.4, input_scaling=0.5, bias_scaling=0.3,
               connectivity=0.2)


def test_both_reservoirs_realise_the_spec(bench):
    torch.manual_seed(0)
    ours = ReservoirCore(SPEC, 1)
    peer = bench.peer_reservoir(SPEC, seed=0)
    peer.initialize(np.zeros((5, 1)))
    w_in, w, bias = np.asarray(peer.Win), peer.W, np.asarray(peer.bias)
    assert ours.spectral_radius() == pytest.approx(SPEC.spectral_radius, rel=1e-6)
    assert bench.spectral_radius(w) == pytest.approx(SPEC.spectral_radius, rel=1e-4)  # ARPACK
    nonzeros = round(SPEC.connectivity * SPEC.units ** 2)
    assert int(torch.count_nonzero(ours.w)) == w.nnz == nonzeros
    assert ours.w_in.shape == w_in.shape == (SPEC.units, 1)
    assert np.count_nonzero(w_in) == SPEC.units  # dense, as ours
    for theirs, mine, scale in ((w_in, ours.w_in, SPEC.input_scaling), (bias, ours.bias, SPEC.bias_scaling)):
        assert np.abs(theirs).max() <= scale
        assert mine.abs().max().item() <= scale
        assert np.abs(theirs).max() > 0.5 * scale
        assert mine.abs().max().item() > 0.5 * scale


def test_reservoirpy_on_our_matrices_gives_our_states(bench):
    torch.manual_seed(1)
    ours = ReservoirCore(SPEC, 1)
    peer = bench.peer_reservoir(SPEC, seed=0, weights=tuple(t.double().numpy() for t in (ours.w_in, ours.w, ours.bias)))
    series = torch.randn(2, 1, 30)  # two windows [B, C, L], each from a zero state
    states, _ = ours(series.transpose(1, 2), torch.ones(2, 30, 1))
    theirs = np.stack(peer.run(bench.as_series(series)))
    np.testing.assert_allclose(theirs, states.double().numpy(), atol=1e-5)
