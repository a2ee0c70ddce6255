"""Three generated datasets for meta-learning: few-shot classification on MNIST-1D templates and on
rotated Fashion-MNIST, and MAML's sinusoid regression tasks. Each is written by seeded code at fetch
time and checked against the sha256s in `datasets.py` like a download, so the generation is bit-reproducible:
numpy generators with fixed seeds, no threads, and float32 (or uint8) files.

The split contract of the two classification datasets (the episode sampler relies on it): `train`
holds only the meta-training side's classes (meta-training and meta-validation; the sampler picks
the meta-validation classes among them), `test` only the meta-test classes, which never occur in
`train`. `classes` lists the training side's classes first, then the test side's, so a test label is
>= the number of training-side classes. A class named "<group>@<variant>" belongs to a group whose
classes must land on the same side (all rotations of one Fashion-MNIST class); a name without "@"
is a group of its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from pipeline.data.arrays import load_arrays, save_arrays
from pipeline.data.source import Readout
from pipeline.errors import PipelineError

SPLITS = ("train", "test")

# --- mnist1d_fewshot -------------------------------------------------------------------------

FEWSHOT_TEMPLATES = 100
"""Random templates, the training side's classes."""
TEMPLATE_LENGTH = 12
"""As MNIST-1D's digit templates."""
TEMPLATE_SMOOTHING = 3
"""Each step of a random template's walk is the mean of this many standard normal draws, which
makes the walk about as smooth as the digit templates (mean |step| / std about 0.64, the digits'
0.46-0.87)."""
TEMPLATE_MAX_CORRELATION = 0.9
"""A random template is drawn again while its (Pearson) correlation with a digit template, or with
a random template accepted before it, exceeds this, so no training-side class is (nearly) a digit
or a copy of another. For scale: the closest two digit templates correlate at 0.93."""
MNIST1D_PER_CLASS = {"train": 100, "test": 200}
"""Signals per class on each side."""
MNIST1D_SEEDS = {"templates": 11, "train": 12, "test": 13}
"""`templates` draws the random templates; each split's seeds numpy's global generator (which
MNIST-1D's transform draws from) while its signals are made, then orders them."""

# --- fmnist_fewshot --------------------------------------------------------------------------

FMNIST_ANGLES = (0, 90, 180, 270)
"""Each Fashion-MNIST class appears under these rotations (counter-clockwise, np.rot90), one class
per (base class, angle)."""
FMNIST_TEST_BASE_COUNT = 3
FMNIST_SEEDS = {"split": 17, "train": 18, "test": 19}
"""`split` permutes the 10 base classes, the first FMNIST_TEST_BASE_COUNT of which are the meta-test
side: T-shirt/top, Trouser and Coat (see fmnist_test_bases). `train`/`test` pick and order each split's
images."""
FMNIST_PER_CLASS = {"train": 500, "test": 250}
"""Images per (base class, angle): the training side from Fashion-MNIST's training images (2000 of
each base's 6000), the test side from its test images (all 1000 of each base)."""

# --- sinusoid --------------------------------------------------------------------------------

SINUSOID_TASKS = {"train": 20_000, "test": 2_000}
SINUSOID_POINTS = 50
SINUSOID_AMPLITUDE = (0.1, 5.0)
SINUSOID_PHASE = (0.0, float(np.pi))
SINUSOID_X = (-5.0, 5.0)
"""The ranges of Finn et al. 2017 (MAML), section 5.1: y = amplitude * sin(x - phase)."""
SINUSOID_SEEDS = {"train": 21, "test": 22}


# --- shared ----------------------------------------------------------------------------------

def _check_labels(arrays: dict[str, np.ndarray], folder: Path, dataset: str, train_classes: int,
                  classes: int) -> None:
    """Training labels in [0, train_classes), test labels in [train_classes, classes)."""
    for split, low, high in (("train", 0, train_classes), ("test", train_classes, classes)):
        labels = arrays[f"y_{split}"]
        if len(labels) and (labels.min() < low or labels.max() >= high):
            raise PipelineError(f"{folder / f'y_{split}.npy'}: labels outside [{low}, {high}) (a corrupt or foreign "
                                f"file); run `pipeline fetch {dataset} --force`")


# --- mnist1d_fewshot -------------------------------------------------------------------------

def normalise_templates(x: np.ndarray) -> np.ndarray:
    """Templates [T, L] normalised as mnist1d.data.get_templates normalises the digits': zero mean,
    unit std, shifted to start at 0, divided by 6."""
    x = x - x.mean(1, keepdims=True)
    x = x / x.std(1, keepdims=True)
    x = x - x[:, :1]
    return x / 6.0


def correlations(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlations [A, B] of the rows of a [A, L] with those of b [B, L] (elementwise
    sums, no BLAS, so the same on every machine)."""
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    dot = (a[:, None, :] * b[None, :, :]).sum(-1)
    return dot / np.sqrt((a * a).sum(-1)[:, None] * (b * b).sum(-1)[None, :])


def digit_templates() -> np.ndarray:
    """MNIST-1D's ten digit templates [10, 12] (float64), as the package makes them."""
    from mnist1d.data import get_templates

    return np.asarray(get_templates()["x"], dtype=np.float64)


def random_templates(digits: np.ndarray, count: int = FEWSHOT_TEMPLATES,
                     seed: int = MNIST1D_SEEDS["templates"]) -> np.ndarray:
    """`count` random templates [count, 12] (float64) that look like the digit templates: a random
    walk whose steps are moving means of normal draws, bent to end where it starts (the digit
    templates start and end at the same level), normalised like them; redrawn while it correlates
    with a digit or an earlier random template above TEMPLATE_MAX_CORRELATION."""
    rng = np.random.default_rng(seed)
    accepted: list[np.ndarray] = []
    ramp = np.linspace(0.0, 1.0, TEMPLATE_LENGTH)
    while len(accepted) < count:
        draws = rng.standard_normal(TEMPLATE_LENGTH - 1 + TEMPLATE_SMOOTHING - 1)
        steps = np.convolve(draws, np.full(TEMPLATE_SMOOTHING, 1.0 / TEMPLATE_SMOOTHING), mode="valid")
        walk = np.concatenate([[0.0], np.cumsum(steps)])
        walk = walk - ramp * walk[-1]
        template = normalise_templates(walk[None])
        if correlations(template, np.concatenate([digits, *accepted])).max() <= TEMPLATE_MAX_CORRELATION:
            accepted.append(template)
    return np.concatenate(accepted)


def mnist1d_fewshot_classes() -> tuple[str, ...]:
    return (*(f"template_{i:03d}" for i in range(FEWSHOT_TEMPLATES)), *(f"digit_{d}" for d in range(10)))


@contextmanager
def _global_numpy_seed(seed: int) -> Iterator[None]:
    """numpy's global generator seeded for the block, its previous state restored after."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def _transformed(templates: np.ndarray, per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Signals float64 [T * per_class, 40] and labels int64 (template index), each signal one draw of
    MNIST-1D's transform (padding, scaling, translation, correlated and iid noise, shear, subsampling
    to 40; the package's default arguments) of its template, as mnist1d.data.make_dataset makes
    them; then shuffled."""
    from mnist1d.data import get_dataset_args, get_templates
    from mnist1d.transform import transform

    args, t = get_dataset_args(), get_templates()["t"]
    with _global_numpy_seed(seed):  # transform draws from numpy's global generator only
        signals = [transform(template, t, args)[0] for template in templates for _ in range(per_class)]
    labels = np.repeat(np.arange(len(templates), dtype=np.int64), per_class)
    order = np.random.default_rng(seed).permutation(len(labels))
    return np.stack(signals)[order], labels[order]


def generate_mnist1d_fewshot(folder: Path, parents: dict[str, Path] | None = None) -> None:
    """The training side: MNIST-1D's transform applied to 100 random templates (100 signals each);
    the test side: to the ten digit templates (200 each), labels 100-109. As make_dataset does, the
    signals are then centred and scaled to unit std, here by the training side's mean and std
    (applied to both sides, so nothing of the test side leaks into the scaling)."""
    try:
        digits = digit_templates()
    except ImportError as err:
        raise PipelineError(f"generating mnist1d_fewshot needs the `mnist1d` package ({err}): pip install mnist1d") \
            from None
    templates = {"train": random_templates(digits), "test": digits}
    made = {split: _transformed(templates[split], MNIST1D_PER_CLASS[split], MNIST1D_SEEDS[split]) for split in SPLITS}
    mean, std = made["train"][0].mean(), made["train"][0].std()
    arrays = {}
    for split, offset in (("train", 0), ("test", FEWSHOT_TEMPLATES)):
        signals, labels = made[split]
        arrays[f"x_{split}"] = ((signals - mean) / std).astype(np.float32)[:, None]
        arrays[f"y_{split}"] = labels + offset
    save_arrays(folder, arrays)


def read_mnist1d_fewshot(folder: Path) -> Readout:
    """Signals float32 [N, 1, 40] (`input`) and their classes (`label`): 100 random templates in
    train, the ten digits (labels 100-109) in test."""
    layout = {f"{kind}_{split}": spec for split in SPLITS
              for kind, spec in (("x", ("float32", (1, 40))), ("y", ("int64", ())))}
    arrays = load_arrays(folder, "mnist1d_fewshot", layout)
    classes = mnist1d_fewshot_classes()
    _check_labels(arrays, folder, "mnist1d_fewshot", FEWSHOT_TEMPLATES, len(classes))
    return Readout({"input": arrays["x_train"], "label": arrays["y_train"]},
                   {"input": arrays["x_test"], "label": arrays["y_test"]}, classes)


# --- fmnist_fewshot --------------------------------------------------------------------------

def fmnist_test_bases() -> tuple[int, ...]:
    """The Fashion-MNIST classes (indices, ascending) on the meta-test side: (0, 1, 4), i.e.
    T-shirt/top, Trouser and Coat."""
    order = np.random.default_rng(FMNIST_SEEDS["split"]).permutation(10)
    return tuple(sorted(int(base) for base in order[:FMNIST_TEST_BASE_COUNT]))


def _fmnist_sides() -> dict[str, tuple[int, ...]]:
    test = fmnist_test_bases()
    return {"train": tuple(base for base in range(10) if base not in test), "test": test}


def fmnist_fewshot_classes(base_names: tuple[str, ...]) -> tuple[str, ...]:
    """"<base>@<angle>" for the training side's bases, then the test side's, each in Fashion-MNIST's
    order, each base's four angles in turn."""
    sides = _fmnist_sides()
    return tuple(f"{base_names[base]}@{angle}" for split in SPLITS for base in sides[split] for angle in FMNIST_ANGLES)


def generate_fmnist_fewshot(folder: Path, parents: dict[str, Path]) -> None:
    """Each side's base classes, each under the four rotations; the images of a base class are
    drawn without replacement (seeded) and dealt to its rotations, so no image appears under two
    classes. Images uint8 [N, 1, 28, 28], shuffled."""
    from pipeline.data.fashion_mnist import read

    parent = read(parents["fashion_mnist"])
    if parent.classes is None or len(parent.classes) != 10:
        raise PipelineError(f"{parents['fashion_mnist']}: Fashion-MNIST without its 10 class names; run "
                            "`pipeline fetch fashion_mnist --force`")
    sides = _fmnist_sides()
    arrays, label = {}, 0
    for split in SPLITS:
        source = getattr(parent, split)
        rng = np.random.default_rng(FMNIST_SEEDS[split])
        per_class = FMNIST_PER_CLASS[split]
        images, labels = [], []
        for base in sides[split]:
            pool = np.flatnonzero(source["label"] == base)
            if len(pool) < per_class * len(FMNIST_ANGLES):
                raise PipelineError(f"{parents['fashion_mnist']}: {len(pool)} {split} images of "
                                    f"{parent.classes[base]!r}, {per_class * len(FMNIST_ANGLES)} needed; run "
                                    "`pipeline fetch fashion_mnist --force`")
            drawn = rng.permutation(pool)[: per_class * len(FMNIST_ANGLES)]
            for k, angle in enumerate(FMNIST_ANGLES):
                chosen = np.sort(drawn[k * per_class: (k + 1) * per_class])
                images.append(np.rot90(source["input"][chosen], k=angle // 90, axes=(-2, -1)))
                labels.append(np.full(per_class, label, dtype=np.int64))
                label += 1
        order = rng.permutation(sum(map(len, labels)))
        arrays[f"x_{split}"] = np.concatenate(images).astype(np.uint8)[order]
        arrays[f"y_{split}"] = np.concatenate(labels)[order]
    save_arrays(folder, arrays)


def read_fmnist_fewshot(folder: Path) -> Readout:
    """Images uint8 [N, 1, 28, 28] (`input`) and their classes (`label`), "<base>@<angle>": 28
    classes (7 bases x 4 rotations) in train, 12 (T-shirt/top, Trouser, Coat x 4) in test."""
    from pipeline.data.fashion_mnist import CLASSES

    layout = {f"{kind}_{split}": spec for split in SPLITS
              for kind, spec in (("x", ("uint8", (1, 28, 28))), ("y", ("int64", ())))}
    arrays = load_arrays(folder, "fmnist_fewshot", layout)
    classes = fmnist_fewshot_classes(CLASSES)
    _check_labels(arrays, folder, "fmnist_fewshot", len(_fmnist_sides()["train"]) * len(FMNIST_ANGLES), len(classes))
    return Readout({"input": arrays["x_train"], "label": arrays["y_train"]},
                   {"input": arrays["x_test"], "label": arrays["y_test"]}, classes)


# --- sinusoid --------------------------------------------------------------------------------

def sinusoid_tasks(count: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """`count` tasks: amplitude and phase float32 [count], points x float32 [count, 1, 50] and the
    values y = amplitude * sin(x - phase) there, computed in float64 from the stored float32
    parameters and points and rounded once to float32 (so they agree to float32 precision, and a
    last-bit difference of a platform's float64 sin almost never reaches the file)."""
    amplitude = rng.uniform(*SINUSOID_AMPLITUDE, count).astype(np.float32)
    phase = rng.uniform(*SINUSOID_PHASE, count).astype(np.float32)
    x = rng.uniform(*SINUSOID_X, (count, 1, SINUSOID_POINTS)).astype(np.float32)
    y = amplitude.astype(np.float64)[:, None, None] * np.sin(x.astype(np.float64)
                                                             - phase.astype(np.float64)[:, None, None])
    return {"x": x, "y": y.astype(np.float32), "amplitude": amplitude, "phase": phase}


def generate_sinusoid(folder: Path, parents: dict[str, Path] | None = None) -> None:
    """20000 training and 2000 test tasks, each split from its own seed."""
    arrays = {}
    for split in SPLITS:
        tasks = sinusoid_tasks(SINUSOID_TASKS[split], np.random.default_rng(SINUSOID_SEEDS[split]))
        arrays.update({f"{name}_{split}": array for name, array in tasks.items()})
    save_arrays(folder, arrays)


def read_sinusoid(folder: Path) -> Readout:
    """Per task: its 50 points float32 [N, 1, 50] (`input`), the function there (`target`), its
    `amplitude` and `phase` float32 [N]; unlabelled."""
    shape = (1, SINUSOID_POINTS)
    layout = {f"{kind}_{split}": spec for split in SPLITS
              for kind, spec in (("x", ("float32", shape)), ("y", ("float32", shape)),
                                 ("amplitude", ("float32", ())), ("phase", ("float32", ())))}
    arrays = load_arrays(folder, "sinusoid", layout)
    train, test = ({"input": arrays[f"x_{split}"], "target": arrays[f"y_{split}"],
                    "amplitude": arrays[f"amplitude_{split}"], "phase": arrays[f"phase_{split}"]}
                   for split in SPLITS)
    return Readout(train, test, None)
