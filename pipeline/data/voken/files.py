"""The datasets' files: each array one .npy file in the dataset's folder."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipeline.data.registry import Readout
from pipeline.errors import PipelineError


def _save(folder: Path, arrays: dict[str, np.ndarray]) -> None:
    for name, array in arrays.items():
        np.save(folder / f"{name}.npy", array, allow_pickle=False)


def _load(folder: Path, names: Sequence[str], dataset: str) -> dict[str, np.ndarray]:
    try:
        return {name: np.load(folder / f"{name}.npy", allow_pickle=False) for name in names}
    except (OSError, ValueError) as err:
        raise PipelineError(f"{folder}: cannot read {dataset} ({err}); "
                            f"run `pipeline fetch {dataset} --force`") from None


def _labelled_text(folder: Path, name: str, classes: tuple[str, ...]) -> Readout:
    """A labelled text dataset's splits: ids x_<split> as `input`, labels y_<split> as `label`."""
    arrays = _load(folder, ("x_train", "y_train", "x_test", "y_test"), name)
    return Readout({"input": arrays["x_train"], "label": arrays["y_train"]},
                   {"input": arrays["x_test"], "label": arrays["y_test"]}, classes)
