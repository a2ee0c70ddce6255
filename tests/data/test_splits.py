"""`data.eval_subset`: quick specs score their tasks on fewer validation and test examples."""

from __future__ import annotations

import pytest
import torch

from pipeline.data.datamodule import Splits
from pipeline.spec.experiment import DataSpec, ExperimentSpec, training_hash


def _splits() -> Splits:
    def fields(n: int, offset: int) -> dict[str, torch.Tensor]:
        index = torch.arange(offset, offset + n)
        return {"input": index.float().view(n, 1, 1).expand(n, 2, 3).clone(), "label": index % 10,
                "index": index}

    return Splits(train=fields(50, 0), val=fields(30, 1000), test=fields(40, 2000), classes=tuple("abcdefghij"))


def test_eval_subset_keeps_that_many_validation_and_test_examples_in_order_with_their_fields():
    splits = _splits()
    limited = splits.with_eval_subset(12, seed=3)
    assert limited.train is splits.train  # the probes' training examples are `probe_subset`'s business
    for name in ("val", "test"):
        kept = getattr(limited, name)
        assert all(len(values) == 12 for values in kept.values())
        index = kept["index"]
        assert torch.all(index[1:] > index[:-1])  # the split's order
        assert set(index.tolist()) <= set(getattr(splits, name)["index"].tolist())
        # Every field of an example is that example's.
        assert torch.equal(kept["label"], index % 10)
        assert torch.equal(kept["input"][:, 0, 0], index.float())
    assert limited.classes == splits.classes


def test_eval_subset_is_seeded_and_leaves_small_splits_and_null_alone():
    splits = _splits()
    again = splits.with_eval_subset(12, seed=3)
    assert torch.equal(splits.with_eval_subset(12, seed=3).test["index"], again.test["index"])
    assert not torch.equal(splits.with_eval_subset(12, seed=4).test["index"], again.test["index"])
    assert splits.with_eval_subset(None, seed=3) is splits
    whole = splits.with_eval_subset(35, seed=3)
    assert torch.equal(whole.val["index"], splits.val["index"])  # 30 <= 35: all of them
    assert len(whole.test["index"]) == 35


def test_eval_subset_does_not_change_what_training_computes():
    spec = ExperimentSpec(name="x", model={"kind": "swav"})
    quick = spec.model_copy(update={"data": DataSpec(eval_subset=100, probe_subset=500)})
    assert training_hash(spec) == training_hash(quick)


def test_eval_subset_is_refused_for_a_series_whose_windows_are_scored_as_one():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="contiguous series"):
        ExperimentSpec(name="x", data=DataSpec(dataset="mackey_glass", eval_subset=10), model={"kind": "esn"})
    ExperimentSpec(name="x", data=DataSpec(dataset="mnist1d", eval_subset=10), model={"kind": "esn"})
