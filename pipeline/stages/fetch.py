"""The fetch stage: a spec's dataset into data/<name>/, checked (see pipeline.data.fetch), and the
datasets its model and downstream tasks read besides it (outliers to train on, a corpus to vokenize,
a text task to probe)."""

from __future__ import annotations

from pathlib import Path

from pipeline.spec.experiment import ExperimentSpec


def datasets(spec: ExperimentSpec) -> list[str]:
    """Every registered dataset the spec's stages read (its model's training and its tasks), its own
    first (none of its own when another spec's stage writes it: `data.dataset: upstream`)."""
    from pipeline.spec.experiment import model_datasets, task_datasets

    names = [] if spec.data.dataset == "upstream" else [spec.data.dataset]
    for read in (model_datasets(spec.model), *(task_datasets(task) for task in spec.downstream)):
        names += [name for name in read if name not in names]
    return names


def fetch(spec: ExperimentSpec) -> Path | None:
    """The spec's own dataset's folder; None for a dataset another spec's stage writes."""
    from pipeline import plugins
    from pipeline.data.fetch import fetch_dataset

    registered = plugins.datasets()
    folders = {name: fetch_dataset(registered[name]) for name in datasets(spec)}
    return folders.get(spec.data.dataset)
