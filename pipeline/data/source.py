"""The contract of a dataset: its files, checksums, fields and where to find them. Pure data,
cheap to import; the datasets themselves are registered by plugins (see `pipeline.plugins`)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Literal


@dataclass(frozen=True)
class RemoteFile:
    name: str
    sha256: str


@dataclass(frozen=True)
class Reference:
    """A published result on a dataset's test split, shown in reports beside ours."""

    model: str
    accuracy: float
    source: str


@dataclass(frozen=True)
class FieldSpec:
    """One named tensor of every example (a batch holds [B, *shape] of it)."""

    name: str
    dtype: Literal["uint8", "float32", "int64"]
    """uint8: intensities (pixels, frames), scaled to [0, 1] for a model; float32: values as they are;
    int64: integers (class labels, token ids, voken ids), which stay integers."""
    shape: tuple[int, ...] = ()
    """Of one example; () for a scalar such as a class label."""
    description: str = ""


@dataclass(frozen=True)
class DatasetSource:
    name: str
    description: str
    files: tuple[RemoteFile, ...]
    reader: str
    """`module:function` (folder) -> Readout: train and test examples as {field: array [N, ...]},
    and the class names where the dataset has class labels."""
    modality: Literal["image", "sequence", "series", "video", "text", "image-text", "vector", "function",
                      "environment"]
    """What a model must take to train on it; each model kind declares the modalities it takes.
    sequence: labelled sequences [C, L]; series: windows of one long series to forecast, with the
    next value at each step as the field `target` [C, L]; function: each example is one function (a
    task) sampled at points: `input` holds the points and `target` the function's values there;
    environment: a world to act in (a reinforcement learner builds it from the registration), whose
    files are a seeded rollout in it: `input` the observations, `label` the actions taken."""
    fields: tuple[FieldSpec, ...]
    """The tensors of each example. `input` is what an encoder reads; `label` (int64, the class)
    is there only where the dataset has class labels."""
    mirror_env: str
    """Environment variable naming a local folder that holds the files (tried first)."""
    mirror_dirs: tuple[str, ...] = ()
    """Local folders tried next (e.g. a distribution's data package)."""
    generator: str | None = None
    """`module:function` (folder, parents) that writes the files: a dataset made by code, not
    downloaded; `parents` maps each dataset of `derived_from` to its checked folder. What it writes
    is checked against the same sha256s as a download."""
    derived_from: tuple[str, ...] = ()
    """Datasets the generator reads (fetched and checked first): a dataset derived from another."""
    base_urls: tuple[str, ...] = ()
    """Tried last, in order: each file is downloaded from base_url + '/' + name."""
    fix_hint: str = ""
    """What to do when no source yields the files (besides setting mirror_env)."""
    references: tuple[Reference, ...] = ()

    def field(self, name: str) -> FieldSpec | None:
        return next((f for f in self.fields if f.name == name), None)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One example of the `input` field, channels first: [C, H, W] images, [C, L] sequences."""
        return self.field("input").shape

    @property
    def labelled(self) -> bool:
        return self.field("label") is not None

    def load_reader(self) -> Any:
        return _resolve(self.reader)

    def load_generator(self) -> Any:
        return _resolve(self.generator) if self.generator else None


@dataclass(frozen=True)
class Readout:
    """What a dataset's reader returns: each split as {field: array [N, ...]} and, for a labelled
    dataset, the class names (index = label)."""

    train: dict[str, Any]
    test: dict[str, Any]
    classes: tuple[str, ...] | None = None


def _resolve(target: str) -> Any:
    module_name, name = target.split(":")
    return getattr(importlib.import_module(module_name), name)
