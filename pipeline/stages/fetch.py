"""The fetch stage: a spec's dataset into data/<name>/, checked (see pipeline.data.fetch)."""

from __future__ import annotations

from pathlib import Path

from pipeline.spec.experiment import ExperimentSpec


def fetch(spec: ExperimentSpec) -> Path | None:
    """None for a dataset another spec's stage writes (`data.dataset: upstream`)."""
    from pipeline.data.fetch import fetch_dataset
    from pipeline.data.registry import DATASETS

    if spec.data.dataset == "upstream":
        return None
    return fetch_dataset(DATASETS[spec.data.dataset])
