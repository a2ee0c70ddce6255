"""The reward tasks as datasets of trials: a cue (one-hot `input`), then a reward (`reward`).

- `reward_magnitudes`: one cue, then one of the paper's seven reward magnitudes (0.1 to 20 µl)
  drawn with MAGNITUDE_PROBABILITIES (ours: a unimodal shape with a long right tail like the
  paper's); `label` is the magnitude's index.
- `reward_probabilities`: one of three cues, then a reward of 1 with the cue's probability (10%,
  50%, 90%) or nothing; `label` is the cue.

Generated with a fixed seed: TRAIN_TRIALS to learn on, TEST_TRIALS as the recording session."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.data.source import DatasetSource, FieldSpec, Readout, RemoteFile
from pipeline.errors import PipelineError

if TYPE_CHECKING:  # numpy is imported where it is used: registering the plugin loads none of it
    import numpy as np

MAGNITUDES = (0.1, 0.3, 1.2, 2.5, 5.0, 10.0, 20.0)
MAGNITUDE_PROBABILITIES = (0.07, 0.09, 0.15, 0.15, 0.31, 0.15, 0.08)
CUE_PROBABILITIES = (0.1, 0.5, 0.9)
TRAIN_TRIALS, TEST_TRIALS = 20000, 4000
SEEDS = {"reward_magnitudes": 71, "reward_probabilities": 72}
FILES = ("x_train.npy", "y_train.npy", "r_train.npy", "x_test.npy", "y_test.npy", "r_test.npy")


def magnitude_trials(count: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    import numpy as np

    outcome = rng.choice(len(MAGNITUDES), size=count, p=MAGNITUDE_PROBABILITIES)
    return {"x": np.ones((count, 1), dtype=np.float32), "y": outcome.astype(np.int64),
            "r": np.asarray(MAGNITUDES, dtype=np.float32)[outcome]}


def probability_trials(count: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    import numpy as np

    cue = rng.integers(len(CUE_PROBABILITIES), size=count)
    rewarded = rng.random(count) < np.asarray(CUE_PROBABILITIES)[cue]
    return {"x": np.eye(len(CUE_PROBABILITIES), dtype=np.float32)[cue], "y": cue.astype(np.int64),
            "r": rewarded.astype(np.float32)}


def _generate(name: str, trials, folder: Path) -> None:
    import numpy as np

    rng = np.random.default_rng(SEEDS[name])
    for split, count in (("train", TRAIN_TRIALS), ("test", TEST_TRIALS)):
        for key, array in trials(count, rng).items():
            np.save(folder / f"{key}_{split}.npy", array, allow_pickle=False)


def generate_magnitudes(folder: Path, parents: dict[str, Path] | None = None) -> None:
    _generate("reward_magnitudes", magnitude_trials, folder)


def generate_probabilities(folder: Path, parents: dict[str, Path] | None = None) -> None:
    _generate("reward_probabilities", probability_trials, folder)


def _read(folder: Path, name: str, classes: tuple[str, ...]) -> Readout:
    import numpy as np

    try:
        arrays = {file: np.load(folder / file, allow_pickle=False) for file in FILES}
    except (OSError, ValueError) as err:
        raise PipelineError(f"{folder}: cannot read the {name} trials ({err}); run `pipeline fetch {name} --force`"
                            ) from None

    def split(part: str) -> dict[str, np.ndarray]:
        return {"input": arrays[f"x_{part}.npy"], "label": arrays[f"y_{part}.npy"], "reward": arrays[f"r_{part}.npy"]}

    return Readout(split("train"), split("test"), classes)


def read_magnitudes(folder: Path) -> Readout:
    return _read(folder, "reward_magnitudes", tuple(f"{m:g} µl" for m in MAGNITUDES))


def read_probabilities(folder: Path) -> Readout:
    return _read(folder, "reward_probabilities", tuple(f"{100 * p:.0f}% cue" for p in CUE_PROBABILITIES))


def _source(name: str, description: str, cues: int, sha256s: tuple[str, ...], label: str) -> DatasetSource:
    short = name.split("_")[1]
    return DatasetSource(
        name=name, description=description,
        files=tuple(RemoteFile(file, sha) for file, sha in zip(FILES, sha256s, strict=True)),
        reader=f"pipeline.models.dopamine.trials:read_{short}",
        modality="vector",
        fields=(FieldSpec("input", "float32", (cues,), "the cue, one-hot"),
                FieldSpec("label", "int64", (), label),
                FieldSpec("reward", "float32", (), "the reward that followed")),
        mirror_env=f"{name.upper()}_DIR",
        generator=f"pipeline.models.dopamine.trials:generate_{short}",
    )


REWARD_MAGNITUDES = _source(
    "reward_magnitudes",
    f"Variable-magnitude reward trials (Dabney et al. 2020's task): one cue, then 0.1 to 20 µl; "
    f"{TRAIN_TRIALS} trials to learn on, {TEST_TRIALS} as the recording session", 1,
    ("aaf926af503067179b90408b23776382a527141976ac42a59ca1631361b4a3e1",
     "75e6754a267cd5045b13840834a21391aab5f700b587555cb8281b5a1520a2f8",
     "8e5b069a67851c1d25dae6a015c67ccf301cea967dd05b633ea1ebc104832f6c",
     "26a7ba02f69aea6543d4d8b5a38aca5137440af8419b863cfa06e8b36634dde9",
     "70428a87821f5376f2a195e248ec3a16e0345793d93824b73951b71276bc89c7",
     "442a7fcc12c21272d96ce53d7d9318dfbdde75f7a91d642dd44945cd47e9add4"),
    "which of the seven magnitudes was given")
REWARD_PROBABILITIES = _source(
    "reward_probabilities",
    f"Variable-probability reward trials: one of three cues, then a reward of 1 with probability 10%, 50% "
    f"or 90%; {TRAIN_TRIALS} trials to learn on, {TEST_TRIALS} as the recording session", 3,
    ("d31d76ea76518d6f39fa95d2735c4f5063faffb9bfa79a926d868c2348f2a718",
     "39111c668e2ff674932e8badd78a9197b1406528d72aea435392a62d51552dd8",
     "80cfc3574e68765878e838b2249bcde6d12e70493ce0d1f47278a84cecba4f9c",
     "209df0206ac994b8a072c3e6c77622e7408cffaed958981410360d64b9c8993a",
     "6bd83d01b9d53ba633cc553b43241994c47f4986bbc6de7988cc0f40c09db516",
     "c3687848717132e582758d4231ba866be371616f4afe4c296b06a026cb082b17"),
    "the cue")
