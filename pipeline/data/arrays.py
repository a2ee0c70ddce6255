"""Generated datasets' files: numpy arrays, one `<stem>.npy` per field and split, written without
pickles and read back checked (dtype, shape of one example, the same count across a split's files),
so a corrupt or foreign file is one clear error naming the fix."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.errors import PipelineError


def save_arrays(folder: Path, arrays: dict[str, np.ndarray]) -> None:
    """Each array as `<stem>.npy` in `folder`, C-contiguous (so its bytes, and sha256, depend only
    on its values)."""
    for name, array in arrays.items():
        np.save(folder / f"{name}.npy", np.ascontiguousarray(array), allow_pickle=False)


def load_arrays(folder: Path, dataset: str, layout: dict[str, tuple[str, tuple[int, ...]]]) -> dict[str, np.ndarray]:
    """Each `<stem>.npy` of `layout` ({stem: (dtype, shape of one example)}), checked: its dtype, its
    shape, and that the files of one split (stems ending in _train or _test) hold as many examples."""
    arrays, lengths = {}, {}
    fix = f"run `pipeline fetch {dataset} --force`"
    for stem, (dtype, shape) in layout.items():
        path = folder / f"{stem}.npy"
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as err:
            raise PipelineError(f"{path}: cannot read {dataset} ({err}); {fix}") from None
        if array.dtype != np.dtype(dtype) or array.shape[1:] != shape:
            raise PipelineError(f"{path}: {array.dtype} {list(array.shape)}, expected {dtype} [N, "
                                f"{', '.join(map(str, shape))}] (a corrupt or foreign file); {fix}")
        split = stem.rsplit("_", 1)[-1]
        if lengths.setdefault(split, len(array)) != len(array):
            raise PipelineError(f"{path}: {len(array)} examples, the other {split} files {lengths[split]}; {fix}")
        arrays[stem] = array
    return arrays
