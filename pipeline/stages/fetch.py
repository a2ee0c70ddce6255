"""The fetch stage: a spec's dataset into data/<name>/, checked (see pipeline.data.fetch)."""

from __future__ import annotations

from pathlib import Path

from pipeline.spec.experiment import ExperimentSpec


def fetch(spec: ExperimentSpec) -> Path:
    from pipeline.data.fetch import fetch_dataset
    from pipeline.data.registry import DATASETS

    return fetch_dataset(DATASETS[spec.data.dataset])
