"""Datasets written by a stage of one spec and read by another (`upstream: {data: <spec>}` with
`data.dataset: upstream`): e.g. an encoder's features, a vokenized corpus.

The writing stage puts each field of each split in its own .npy file beside `dataset.json`, which
describes the dataset (modality, fields, classes) and holds every file's sha256: a reader checks
them, like a download, so a partial or altered file is never used.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from pipeline.data.fetch import sha256_of
from pipeline.data.registry import DatasetSource, FieldSpec, Readout, RemoteFile
from pipeline.errors import PipelineError
from pipeline.fsutil import write_atomic

DESCRIPTION = "dataset.json"
SPLITS = ("train", "test")


def _save(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as handle:  # a handle: np.save would add ".npy" to a temporary file's name
        np.save(handle, array, allow_pickle=False)


def write_dataset(folder: Path, name: str, description: str, modality: str, train: dict[str, np.ndarray],
                  test: dict[str, np.ndarray], classes: tuple[str, ...] | None = None, run_id: str | None = None
                  ) -> Path:
    """Write the splits' fields ({field: array [N, ...]}) and dataset.json into `folder`; the
    description is written last, so a folder without it was never finished. `run_id`: the MLflow
    run that wrote it (a reader checks it is the writer's last finished one)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / DESCRIPTION).unlink(missing_ok=True)
    files, fields = {}, []
    for field, values in train.items():
        values = np.asarray(values)
        dtype = {"u": "uint8", "f": "float32", "i": "int64"}[values.dtype.kind]
        fields.append(FieldSpec(field, dtype, tuple(values.shape[1:])))
    for split, arrays in (("train", train), ("test", test)):
        if set(arrays) != set(train):
            raise ValueError(f"the test split's fields {sorted(arrays)} differ from the train split's {sorted(train)}")
        for field, values in arrays.items():
            target = folder / f"{split}.{field}.npy"
            spec = next(f for f in fields if f.name == field)
            write_atomic(target, lambda tmp, v=values, t=spec.dtype: _save(tmp, np.asarray(v).astype(t)))
            files[target.name] = sha256_of(target)
    text = json.dumps({"name": name, "description": description, "modality": modality,
                       "fields": [asdict(f) for f in fields], "classes": list(classes) if classes else None,
                       "files": files, "run_id": run_id}, indent=2, sort_keys=True)
    return write_atomic(folder / DESCRIPTION, lambda tmp: tmp.write_text(text + "\n"))


def source(folder: Path) -> DatasetSource:
    """The dataset a stage wrote into `folder`, described as any other dataset (its files checked
    by the sha256s the writer recorded)."""
    try:
        described = json.loads((folder / DESCRIPTION).read_text())
    except FileNotFoundError:
        raise PipelineError(f"{folder} holds no finished dataset (no {DESCRIPTION}): run the stage that writes "
                            "it (the upstream spec's `pipeline evaluate`)") from None
    except (OSError, ValueError) as err:
        raise PipelineError(f"{folder / DESCRIPTION} is unreadable ({err}): run the stage that writes it again") \
            from None
    return DatasetSource(
        name=described["name"], description=described["description"],
        files=tuple(RemoteFile(name, sha) for name, sha in sorted(described["files"].items())),
        reader="pipeline.data.written:read", modality=described["modality"],
        fields=tuple(FieldSpec(f["name"], f["dtype"], tuple(f["shape"]), f.get("description", ""))
                     for f in described["fields"]),
        mirror_env="", fix_hint="run the upstream spec's evaluate stage, which writes it")


def writer(folder: Path) -> str | None:
    """The MLflow run that wrote the dataset in `folder`."""
    return json.loads((folder / DESCRIPTION).read_text()).get("run_id")


def read(folder: Path) -> Readout:
    described = json.loads((folder / DESCRIPTION).read_text())
    fields = [f["name"] for f in described["fields"]]

    def split(name: str) -> dict[str, np.ndarray]:
        return {field: np.load(folder / f"{name}.{field}.npy", allow_pickle=False) for field in fields}

    classes = described.get("classes")
    return Readout(split("train"), split("test"), tuple(classes) if classes else None)
