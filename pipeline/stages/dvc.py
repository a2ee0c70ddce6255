"""dvc.yaml, written from the specs: `pipeline dvc` (and `pipeline dvc --check` in tests and CI).

Each spec gets `pretrain@<name>` (when it trains a model), `evaluate@<name>` and `report@<name>`;
each dataset `fetch@<dataset>`. A stage depends on

- its spec as DVC params (the whole file: `dvc params diff`, `dvc exp run --set-param` and
  `dvc exp show` see every field; an override there is the same edit `pipeline run --set` makes),
- the data it reads (`data/<dataset>`), the trained model it reads (its own pretraining, or the
  upstream spec's: DVC then runs and reuses the upstream's stages like its own),
- the code that computes its result (`CODE` below, and the family's folder): a change there
  reruns the stage, so a result computed by older code never looks current. Code that only
  reports, logs or validates (the CLI, tracking, the spec loader's messages) is left out.

DVC's `foreach` takes the same list of dependencies for every entry, so each entry fills the same
slots; a slot a spec has no use for repeats one it has (DVC records a path once per mention).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import yaml

from pipeline.errors import PipelineError

CODE = {
    "fetch": ["pipeline/data/fetch.py", "pipeline/data/registry.py"],
    "pretrain": ["pipeline/stages/train.py", "pipeline/stages/resume.py", "pipeline/callbacks.py",
                 "pipeline/models/base.py", "pipeline/models/backbones.py", "pipeline/data/datamodule.py",
                 "pipeline/data/augment.py", "pipeline/spec/components.py", "pipeline/spec/experiment.py"],
    "evaluate": ["pipeline/stages/evaluate.py", "pipeline/upstream.py", "pipeline/evaluators",
                 "pipeline/models/base.py", "pipeline/models/backbones.py", "pipeline/data/datamodule.py",
                 "pipeline/spec/components.py", "pipeline/spec/experiment.py"],
    "report": ["pipeline/stages/report.py"],
}
"""The code each stage's result depends on, beside the family's own folder."""

HEADER = """\
# Written by `pipeline dvc` from specs/*.yaml: do not edit by hand. After adding or changing a spec
# (its upstream, its dataset, its model kind), run `pipeline dvc`; `pipeline dvc --check` fails
# while this file is stale. Stages: fetch@<dataset>, pretrain@<spec>, evaluate@<spec>, report@<spec>.
# A stage reruns when its spec's fields, its data, the trained model it reads, or the code listed
# in its deps change (the family's folder included); `dvc repro report@<spec>` runs a spec's
# upstream specs' stages first and reuses them when they are current.
"""


def module_file(target: str) -> str:
    """`pipeline.data.fashion_mnist:read` -> pipeline/data/fashion_mnist.py"""
    return target.split(":")[0].replace(".", "/") + ".py"


def family_folder(kind: str) -> str:
    """The folder of a model family's code (its spec, module, losses)."""
    from pipeline.models import REGISTRY

    module = REGISTRY[kind].module.split(":")[0].split(".")
    return "/".join(module[:3])  # pipeline/models/<family>


def code_paths(stage: str, kind: str | None = None) -> list[str]:
    return [*CODE[stage], *([family_folder(kind)] if kind else [])]


def fingerprint(paths: list[str], root: Path) -> str:
    """A hash of the Python files under `paths` (caches such as __pycache__ left out): equal
    exactly when the code a stage depends on is unchanged."""
    digest = hashlib.sha256()
    files = []
    for path in paths:
        target = root / path
        files += sorted(target.rglob("*.py")) if target.is_dir() else [target]
    for file in files:
        if file.is_file() and "__pycache__" not in file.parts:
            digest.update(str(file.relative_to(root)).encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _specs(folder: Path) -> dict:
    from pipeline.spec.load import SpecError, load

    specs, problems = {}, []
    for path in sorted(folder.glob("*.yaml")):
        try:
            spec = load(path)
        except SpecError as err:
            problems.append(str(err))
            continue
        if spec.name != path.stem:
            problems.append(f"{path}: name {spec.name!r} differs from the file name: outputs are named by the "
                            f"spec's name and stages by its file; rename one to match")
            continue
        specs[spec.name] = spec
    if problems:
        raise PipelineError("dvc.yaml is made from every spec, and these do not validate:\n" + "\n".join(problems))
    return specs


def encoder_kind(name: str, specs: dict) -> str | None:
    """The model kind whose encoder a spec's downstream tasks read (its own, or up its chain)."""
    spec = specs[name]
    if spec.model is not None:
        return spec.model.kind
    ref = spec.upstream.get("encoder")
    return encoder_kind(ref, specs) if ref in specs else None


def encoder_dir(name: str, specs: dict) -> str | None:
    spec = specs[name]
    if spec.model is not None:
        return f"artifacts/{name}/pretrain"
    ref = spec.upstream.get("encoder")
    return encoder_dir(ref, specs) if ref in specs else None  # a registered model: no file to track


def generate(folder: Path) -> str:
    from pipeline.data.registry import DATASETS

    specs = _specs(folder)
    datasets = sorted({spec.data.dataset for spec in specs.values()})
    fetch = {name: {"code": module_file(DATASETS[name].generator or DATASETS[name].reader)} for name in datasets}
    pretrain, evaluate, report = {}, {}, {}
    for name, spec in specs.items():
        data = f"data/{spec.data.dataset}"
        if spec.model is not None:
            upstream = spec.upstream.get("encoder")
            pretrain[name] = {"data": data, "family": family_folder(spec.model.kind),
                              "encoder": f"artifacts/{upstream}/pretrain" if upstream in specs else data}
        kind = encoder_kind(name, specs)
        evaluate[name] = {"data": data, "family": family_folder(kind) if kind else "pipeline/models",
                          "encoder": encoder_dir(name, specs) or data}
        report[name] = {}
    params = [{"specs/${key}.yaml": None}]
    stages: dict = {
        "fetch": {"foreach": fetch, "do": {
            "cmd": "pipeline fetch ${key}",
            "deps": [*CODE["fetch"], "${item.code}"],
            "outs": [{"data/${key}": {"persist": True}}]}},
        "pretrain": {"foreach": pretrain, "do": {
            # A killed training continues when the stage reruns (its folder persists), and a finished
            # one of the same configuration and code is kept (see `pipeline pretrain --auto-resume`).
            "cmd": "pipeline pretrain specs/${key}.yaml --auto-resume",
            "params": params,
            "deps": ["${item.data}", "${item.encoder}", *CODE["pretrain"], "${item.family}"],
            "outs": [{"artifacts/${key}/pretrain": {"persist": True}}],
            "metrics": [{"metrics/${key}/pretrain.json": {"cache": False}}],
            "plots": [{"metrics/${key}/plots": {"cache": False, "x": "step", "y": "value"}}]}},
        "evaluate": {"foreach": evaluate, "do": {
            "cmd": "pipeline evaluate specs/${key}.yaml",
            "params": params,
            "deps": ["${item.data}", "${item.encoder}", *CODE["evaluate"], "${item.family}"],
            "outs": ["artifacts/${key}/evaluate"],
            "metrics": [{"metrics/${key}/evaluate.json": {"cache": False}}]}},
        "report": {"foreach": report, "do": {
            "cmd": "pipeline report specs/${key}.yaml",
            "deps": ["metrics/${key}/evaluate.json", *CODE["report"]],
            "outs": [{"reports/${key}.md": {"cache": False}}]}},
    }
    if not pretrain:
        del stages["pretrain"]
    return HEADER + yaml.safe_dump({"stages": stages}, sort_keys=False, width=120)


def write(folder: Path, target: Path, check: bool = False) -> bool:
    """Write dvc.yaml (or, with `check`, say whether the file on disk is current)."""
    text = generate(folder)
    if check:
        return target.is_file() and target.read_text() == text
    target.write_text(text)
    return True
