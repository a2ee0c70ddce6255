"""dvc.yaml, written from the specs: `pipeline dvc` (and `pipeline dvc --check` in tests and CI).

Each spec gets `pretrain@<name>` (when it trains a model), `evaluate@<name>`, `seeds@<name>` (when
it lists `seeds`: the whole spec over each, `pipeline run --seeds`) and `report@<name>`;
each dataset `fetch@<dataset>` (`derive@<dataset>` when it is made from another dataset). A stage depends on

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
    "fetch": ["pipeline/data/fetch.py", "pipeline/data/source.py", "pipeline/data/registry.py", "pipeline/data/text.py",
              "pipeline/data/wordnet.py"],
    "pretrain": ["pipeline/stages/train.py", "pipeline/stages/resume.py", "pipeline/callbacks.py",
                 "pipeline/plugins.py", "pipeline/models/base.py", "pipeline/models/backbones.py",
                 "pipeline/data", "pipeline/spec/components.py", "pipeline/spec/experiment.py"],
    "evaluate": ["pipeline/stages/evaluate.py", "pipeline/upstream.py", "pipeline/evaluators",
                 "pipeline/plugins.py", "pipeline/models/base.py", "pipeline/models/backbones.py",
                 "pipeline/data", "pipeline/spec/components.py", "pipeline/spec/experiment.py"],
    "report": ["pipeline/stages/report.py", "pipeline/stages/seeds.py"],
}
"""The code each stage's result depends on, beside the family's own folder (paths from the
folder that holds the `pipeline` package)."""


def package_root() -> Path:
    """The folder holding the `pipeline` package that runs (the checkout, for an editable install)."""
    import pipeline

    return Path(pipeline.__file__).resolve().parent.parent


def tracks_code(project: Path) -> bool:
    """Whether the project is the checkout of the package that runs: then dvc.yaml lists the
    code as dependencies. A project elsewhere (using an installed pipeline) cannot name files
    outside itself; its training stage still refuses to keep a training made by other code (the
    code fingerprint in run.json)."""
    return (project / "pipeline").resolve() == package_root() / "pipeline"

HEADER = """\
# Written by `pipeline dvc` from specs/*.yaml: do not edit by hand. After adding or changing a spec
# (its upstream, its dataset, its model kind), run `pipeline dvc`; `pipeline dvc --check` fails
# while this file is stale. Stages: fetch@<dataset> (derive@<dataset> for a dataset made from another),
# pretrain@<spec>, evaluate@<spec>, seeds@<spec> (a spec that lists `seeds`), report@<spec>.
# A stage reruns when its spec's fields, its data, the trained model it reads, or the code listed
# in its deps change (the family's folder included); `dvc repro report@<spec>` runs a spec's
# upstream specs' stages first and reuses them when they are current.
"""


def module_file(target: str) -> str:
    """The code of a dataset's reader or generator: `pipeline.data.fashion_mnist:read` ->
    pipeline/data/fashion_mnist.py; a module inside a package of its own
    (`pipeline.data.voken.corpus:read_corpus`) -> the whole package (pipeline/data/voken), whose
    other modules (a tokenizer, a caption grammar) make the same files."""
    parts = target.split(":")[0].split(".")
    if len(parts) > 3:
        return "/".join(parts[:3])
    return "/".join(parts) + ".py"


def family_folder(kind: str) -> str | None:
    """The folder of a model family's code (its spec, module, losses); None for a family
    registered from outside the package, whose code is its own to track."""
    from pipeline import plugins

    parts = plugins.models()[kind].module.split(":")[0].split(".")
    return "/".join(parts[:3]) if parts[:2] == ["pipeline", "models"] and len(parts) >= 3 else None


def code_paths(stage: str, kind: str | None = None) -> list[str]:
    family = family_folder(kind) if kind else None
    return [*CODE[stage], *([family] if family else [])]


def fingerprint(paths: list[str], root: Path | None = None) -> str:
    """A hash of the Python files under `paths` (from `root`, default the package's root; caches
    such as __pycache__ left out): equal exactly when the code a stage depends on is unchanged."""
    root = root or package_root()
    digest = hashlib.sha256()
    files = []
    for path in paths:
        target = root / path
        if not target.exists():
            raise PipelineError(f"{target} is listed as code a stage depends on, but does not exist: "
                                "update CODE in pipeline/stages/dvc.py")
        files += sorted(target.rglob("*.py")) if target.is_dir() else [target]
    for file in files:
        if "__pycache__" not in file.parts:
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


def encoder_owner(name: str, specs: dict) -> str | None:
    """The spec whose trained encoder `name`'s downstream tasks read: itself when it trains a
    model, else its upstream encoder spec (which validation requires to train one); None for a
    registered MLflow model, which has no file to track."""
    spec = specs[name]
    if spec.model is not None:
        return name
    ref = spec.upstream.get("encoder")
    return ref if ref in specs else None


def generate(folder: Path, project: Path | None = None) -> str:
    from pipeline import plugins

    registered = plugins.datasets()
    code = tracks_code(project or folder.parent)
    specs = _specs(folder)
    from pipeline.stages.fetch import datasets as datasets_of

    read = {name: datasets_of(spec) for name, spec in specs.items()}
    datasets = {dataset for names in read.values() for dataset in names}
    pending = list(datasets)
    while pending:  # a derived dataset's parents are fetched too, and theirs
        parents = set(registered[pending.pop()].derived_from) - datasets
        datasets |= parents
        pending += parents
    fetch = {name: {"code": module_file(registered[name].generator or registered[name].reader)}
             for name in sorted(datasets) if not registered[name].derived_from}
    # Every entry of a foreach fills the same slots: as many parent slots as the most parents any
    # derived dataset has, the last parent repeated where one has fewer.
    most_parents = max((len(registered[name].derived_from) for name in datasets), default=1)
    derive = {name: {"code": module_file(registered[name].generator),
                     **{f"parent{i}": f"data/{parents[min(i, len(parents) - 1)]}" for i in range(most_parents)}}
              for name in sorted(datasets) if (parents := registered[name].derived_from)}
    # Likewise the datasets a spec's downstream tasks read besides its own (a corpus, a text task).
    task_datasets = {name: [d for d in read[name] if d != spec.data.dataset] for name, spec in specs.items()}
    most_task_data = max(map(len, task_datasets.values()), default=0)
    pretrain, evaluate, seeds, report = {}, {}, {}, {}
    for name, spec in specs.items():
        # Data: a fetched dataset, or the one another spec's evaluate stage writes.
        data = f"artifacts/{spec.upstream['data']}/evaluate" if "data" in spec.upstream else f"data/{spec.data.dataset}"
        task_data = [f"data/{dataset}" for dataset in task_datasets[name]] or [data]
        tasks_read = {f"task_data{i}": task_data[min(i, len(task_data) - 1)] for i in range(most_task_data)}
        if spec.model is not None:
            upstream = spec.upstream.get("encoder")
            pretrain[name] = {"data": data, "family": family_folder(spec.model.kind) or "pipeline/models",
                              "encoder": f"artifacts/{upstream}/pretrain" if upstream in specs else data}
        owner = encoder_owner(name, specs)
        evaluate[name] = {"data": data,
                          "family": (family_folder(specs[owner].model.kind) if owner else None) or "pipeline/models",
                          "encoder": f"artifacts/{owner}/pretrain" if owner else data, **tasks_read}
        # A spec that lists seeds runs over them after its own seed's stages, and reports the spread.
        if spec.seeds:
            seeds[name] = {**evaluate[name], "seeds": ",".join(map(str, spec.seeds)),
                           "evaluated": f"metrics/{name}/evaluate.json"}
        report[name] = {"figures": f"metrics/{name}/seeds.json" if spec.seeds else f"metrics/{name}/evaluate.json"}

    def code_deps(stage: str, *slots: str) -> list[str]:
        return [*CODE[stage], *slots] if code else []

    params = [{"specs/${key}.yaml": None}]
    task_slots = [f"${{item.task_data{i}}}" for i in range(most_task_data)]
    stages: dict = {
        "fetch": {"foreach": fetch, "do": {
            "cmd": "pipeline fetch ${key}",
            "deps": code_deps("fetch", "${item.code}"),
            "outs": [{"data/${key}": {"persist": True}}]}},
        # A dataset derived from another by a seeded generator: after its parent.
        "derive": {"foreach": derive, "do": {
            "cmd": "pipeline fetch ${key}",
            "deps": [*(f"${{item.parent{i}}}" for i in range(most_parents)), *code_deps("fetch", "${item.code}")],
            "outs": [{"data/${key}": {"persist": True}}]}},
        "pretrain": {"foreach": pretrain, "do": {
            # A killed training continues when the stage reruns (its folder persists), and a finished
            # one of the same configuration and code is kept (see `pipeline pretrain --auto-resume`).
            "cmd": "pipeline pretrain specs/${key}.yaml --auto-resume",
            "params": params,
            "deps": ["${item.data}", "${item.encoder}", *code_deps("pretrain", "${item.family}")],
            "outs": [{"artifacts/${key}/pretrain": {"persist": True}}],
            "metrics": [{"metrics/${key}/pretrain.json": {"cache": False}}],
            "plots": [{"metrics/${key}/plots": {"cache": False, "x": "step", "y": "value"}}]}},
        "evaluate": {"foreach": evaluate, "do": {
            "cmd": "pipeline evaluate specs/${key}.yaml",
            "params": params,
            "deps": ["${item.data}", "${item.encoder}", *task_slots, *code_deps("evaluate", "${item.family}")],
            "outs": ["artifacts/${key}/evaluate"],
            "metrics": [{"metrics/${key}/evaluate.json": {"cache": False}}]}},
        "seeds": {"foreach": seeds, "do": {
            # Every seed of the spec's `seeds` (its own seed's training and evaluation, current after
            # the stages above, are kept); metrics/<spec>/seeds.json holds each figure's spread.
            "cmd": "pipeline run specs/${key}.yaml --seeds ${item.seeds}",
            "params": params,
            "deps": ["${item.data}", "${item.encoder}", "${item.evaluated}", *task_slots,
                     *code_deps("pretrain", *(p for p in CODE["evaluate"] if p not in CODE["pretrain"]),
                                "pipeline/stages/seeds.py", "${item.family}")],
            "metrics": [{"metrics/${key}/seeds.json": {"cache": False}}]}},
        "report": {"foreach": report, "do": {
            "cmd": "pipeline report specs/${key}.yaml",
            "deps": ["metrics/${key}/evaluate.json", "${item.figures}", *code_deps("report")],
            "outs": [{"reports/${key}.md": {"cache": False}}]}},
    }
    for name, entries in (("fetch", fetch), ("derive", derive), ("pretrain", pretrain), ("seeds", seeds)):
        if not entries:
            del stages[name]
    for stage in stages.values():
        if not stage["do"].get("deps", True):
            del stage["do"]["deps"]
    return HEADER + yaml.safe_dump({"stages": stages}, sort_keys=False, width=120)


def write(folder: Path, target: Path, check: bool = False) -> bool:
    """Write dvc.yaml (or, with `check`, say whether the file on disk is current)."""
    text = generate(folder, target.parent)
    if check:
        return target.is_file() and target.read_text() == text
    target.write_text(text)
    return True
