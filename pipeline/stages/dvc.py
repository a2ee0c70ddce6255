"""dvc.yaml, written from the specs: `pipeline dvc` (and `pipeline dvc --check` in tests and CI).

Each spec gets `pretrain@<name>` (when it trains a model), `evaluate@<name>`, `seeds@<name>` (when
it lists a seed besides its own in `seeds`: the whole spec over each, `pipeline run --seeds`) and
`report@<name>`; each dataset `fetch@<dataset>` (`derive@<dataset>` when it is made from another
dataset). A stage depends on

- its spec as DVC params (the whole file: `dvc params diff`, `dvc exp run --set-param` and
  `dvc exp show` see every field; an override there is the same edit `pipeline run --set` makes),
- the data it reads (`data/<dataset>`), the trained model it reads (its own pretraining, or the
  upstream spec's: DVC then runs and reuses the upstream's stages like its own),
- the code that computes its result (`CODE` below, and the family's folder), through a fingerprint
  file: the `fingerprint` stage (`pipeline fingerprint`) writes `fingerprints/<stage>-<family>.txt`,
  a hash of that code without its comments and documentation strings. DVC reruns the fingerprint
  stage on any edit of the code (it hashes the files' bytes), and a stage that depends on a
  fingerprint only when the fingerprint changed: a docstring or comment edit retrains nothing, a
  code change reruns every stage whose result it can change, so a result computed by older code
  never looks current. Code that only reports, logs or validates (the CLI, tracking, the spec
  loader's messages) is left out.

Outputs: metrics (`metrics/<name>/*.json`) and curves (`metrics/<name>/plots/`) are small text,
`cache: false` and committed to git (`dvc metrics diff`, `dvc plots diff`); data, artifacts and
reports are in DVC's cache (`dvc push` / `dvc pull`), and git ignores them. See docs/dvc.md.

DVC's `foreach` takes the same list of dependencies for every entry, so each entry fills the same
slots; a slot a spec has no use for repeats one it has (DVC records a path once per mention, and
an output named twice in one stage once).
"""

from __future__ import annotations

import ast
import functools
import hashlib
import io
import tokenize
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

FINGERPRINTS = "fingerprints"
"""The folder (in the project) of the fingerprint files the stages depend on."""


def package_root() -> Path:
    """The folder holding the `pipeline` package that runs (the checkout, for an editable install)."""
    import pipeline

    return Path(pipeline.__file__).resolve().parent.parent


def tracks_code(project: Path) -> bool:
    """Whether the project is the checkout of the package that runs: then dvc.yaml makes its stages
    depend on the code. A project elsewhere (using an installed pipeline) cannot name files
    outside itself; its training stage still refuses to keep a training made by other code (the
    code fingerprint in run.json)."""
    return (project / "pipeline").resolve() == package_root() / "pipeline"

HEADER = """\
# Written by `pipeline dvc` from specs/*.yaml: do not edit by hand. After adding or changing a spec
# (its upstream, its dataset, its model kind), run `pipeline dvc`; `pipeline dvc --check` fails
# while this file is stale. Stages: fetch@<dataset> (derive@<dataset> for a dataset made from another),
# pretrain@<spec>, evaluate@<spec>, seeds@<spec> (a spec that lists other seeds), report@<spec>, and
# fingerprint (fingerprints/*.txt: the code each stage depends on, comments and docstrings left out).
# A stage reruns when its spec's fields, its data, the trained model it reads, or its code's
# fingerprint change (the family's folder included); `dvc repro report@<spec>` runs a spec's
# upstream specs' stages first and reuses them when they are current. Metrics and plots are
# committed to git, data, artifacts and reports pushed to a DVC remote: see docs/dvc.md.
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


def _documentation(tree: ast.AST) -> list[ast.Expr]:
    """The statements that are a bare string: docstrings, and the strings that document an
    attribute (a string after an assignment). Nothing runs them."""
    return [node for node in ast.walk(tree) if isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)]


@functools.lru_cache(maxsize=2048)  # the files several code sets share are read once
def code_text(source: str) -> str:
    """The source as a stage's result depends on it: without comments, documentation strings,
    blank lines and trailing spaces. Made from the text itself (positions from Python's parser and
    tokenizer), not from a dump of the syntax tree, which differs between Python versions: one
    fingerprint on every machine of a team. Source that does not parse is taken as it is."""
    try:
        tree = ast.parse(source)
        comments = [(token.start, token.end) for token in tokenize.generate_tokens(io.StringIO(source).readline)
                    if token.type == tokenize.COMMENT]
    except (SyntaxError, ValueError, tokenize.TokenError):
        return source
    lines = io.StringIO(source).readlines()

    def column(row: int, offset: int) -> int:  # the parser counts UTF-8 bytes, the tokenizer characters
        if row > len(lines):
            return offset
        return len(lines[row - 1].encode(errors="surrogateescape")[:offset].decode(errors="ignore"))

    spans = [((node.lineno, column(node.lineno, node.col_offset)),
              (node.end_lineno, column(node.end_lineno, node.end_col_offset))) for node in _documentation(tree)]
    for (start_row, start_col), (end_row, end_col) in sorted(spans + comments, reverse=True):
        if start_row > len(lines):
            continue
        if start_row == end_row:
            lines[start_row - 1] = lines[start_row - 1][:start_col] + lines[start_row - 1][end_col:]
        else:
            lines[start_row - 1] = lines[start_row - 1][:start_col]
            for row in range(start_row, end_row - 1):
                lines[row] = ""
            lines[end_row - 1] = lines[end_row - 1][end_col:]
    return "\n".join(line.rstrip() for line in lines if line.strip()) + "\n"


def fingerprint(paths: list[str], root: Path | None = None) -> str:
    """A hash of the Python files under `paths` (from `root`, default the package's root; caches
    such as __pycache__ left out), each without its comments and documentation strings
    (`code_text`): equal exactly when the code a stage depends on is unchanged, whatever its
    prose."""
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
            text = code_text(file.read_text(encoding="utf-8", errors="surrogateescape"))
            digest.update(str(file.relative_to(root)).encode() + b"\0"
                          + text.encode("utf-8", errors="surrogateescape") + b"\0")
    return digest.hexdigest()[:16]


def write_fingerprint(target: Path, paths: list[str], root: Path | None = None) -> str:
    """Write `fingerprint(paths)` to `target` (its first line; the paths it covers after it), the
    file a DVC stage depends on instead of the code itself; the fingerprint."""
    from pipeline.fsutil import write_atomic

    found = fingerprint(paths, root)
    text = found + "\n" + "".join(f"{path}\n" for path in paths)
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.is_file() or target.read_text() != text:
        write_atomic(target, lambda tmp: tmp.write_text(text))
    return found


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


def other_seeds(spec) -> list[int]:
    """The seeds of a spec's `seeds` besides its own: each is an output of its own,
    `<name>-seed<s>`, made by the spec's seeds stage."""
    return [seed for seed in spec.seeds if seed != spec.seed]


class _Code:
    """The code sets the stages of some specs depend on, each named `<stage>-<family>` (the
    family's folder name; `models` for the whole of pipeline/models, where the family's code is
    not in the package or the encoder is a registered MLflow model), `fetch-<dataset>` or `report`."""

    def __init__(self) -> None:
        self.sets: dict[str, list[str]] = {}

    def add(self, key: str, paths: list[str]) -> str:
        self.sets[key] = paths
        return f"{FINGERPRINTS}/{key}.txt"

    def family(self, stage: str, kind: str | None, paths: list[str]) -> str:
        folder = (family_folder(kind) if kind else None) or "pipeline/models"
        return self.add(f"{stage}-{folder.split('/')[-1]}", [*paths, folder])

    def outermost(self) -> list[str]:
        """Every path of every set, less those inside a folder listed too."""
        every = sorted({path for paths in self.sets.values() for path in paths})
        return [path for path in every if not any(path.startswith(f"{other}/") for other in every)]


def _plan(specs: dict) -> dict:
    """Each stage's entries (the foreach items of dvc.yaml) and the code sets they depend on."""
    from pipeline import plugins
    from pipeline.spec.experiment import model_datasets
    from pipeline.spec.experiment import task_datasets as task_datasets_of
    from pipeline.stages.fetch import datasets as datasets_of

    registered = plugins.datasets()
    code = _Code()
    read = {name: datasets_of(spec) for name, spec in specs.items()}
    datasets = {dataset for names in read.values() for dataset in names}
    pending = list(datasets)
    while pending:  # a derived dataset's parents are fetched too, and theirs
        parents = set(registered[pending.pop()].derived_from) - datasets
        datasets |= parents
        pending += parents

    def fetch_code(name: str) -> str:
        entry = registered[name]
        return code.add(f"fetch-{name}", [*CODE["fetch"], module_file(entry.generator or entry.reader)])

    fetch = {name: {"code": fetch_code(name)} for name in sorted(datasets) if not registered[name].derived_from}
    # Every entry of a foreach fills the same slots: as many parent slots as the most parents any
    # derived dataset has, the last parent repeated where one has fewer.
    most_parents = max((len(registered[name].derived_from) for name in datasets), default=1)
    derive = {name: {"code": fetch_code(name),
                     **{f"parent{i}": f"data/{parents[min(i, len(parents) - 1)]}" for i in range(most_parents)}}
              for name in sorted(datasets) if (parents := registered[name].derived_from)}
    # Likewise the datasets a spec's downstream tasks read besides its own (a corpus, a text task).
    task_datasets = {name: list(dict.fromkeys(d for task in spec.downstream for d in task_datasets_of(task)
                                              if d != spec.data.dataset)) for name, spec in specs.items()}
    most_task_data = max(map(len, task_datasets.values()), default=0)
    # And those its model's training reads (outliers to expose it to): dependencies of its pretrain stage.
    model_data = {name: [d for d in model_datasets(spec.model) if d != spec.data.dataset]
                  for name, spec in specs.items()}
    most_model_data = max(map(len, model_data.values()), default=0)
    # And the outputs of the seeds besides a spec's own.
    most_seeds = max((len(other_seeds(spec)) for spec in specs.values()), default=0)
    pretrain, evaluate, seeds, report = {}, {}, {}, {}
    for name, spec in specs.items():
        # Data: a fetched dataset, or the one another spec's evaluate stage writes.
        data = f"artifacts/{spec.upstream['data']}/evaluate" if "data" in spec.upstream else f"data/{spec.data.dataset}"
        task_data = [f"data/{dataset}" for dataset in task_datasets[name]] or [data]
        tasks_read = {f"task_data{i}": task_data[min(i, len(task_data) - 1)] for i in range(most_task_data)}
        if spec.model is not None:
            upstream = spec.upstream.get("encoder")
            read_too = [f"data/{dataset}" for dataset in model_data[name]] or [data]
            pretrain[name] = {"data": data, "code": code.family("pretrain", spec.model.kind, CODE["pretrain"]),
                              "encoder": f"artifacts/{upstream}/pretrain" if upstream in specs else data,
                              **{f"model_data{i}": read_too[min(i, len(read_too) - 1)]
                                 for i in range(most_model_data)}}
        owner = encoder_owner(name, specs)
        kind = specs[owner].model.kind if owner else None
        evaluate[name] = {"data": data, "code": code.family("evaluate", kind, CODE["evaluate"]),
                          "encoder": f"artifacts/{owner}/pretrain" if owner else data, **tasks_read}
        # A spec that lists other seeds runs over them after its own seed's stages, and reports the
        # spread; each other seed's artifacts and metrics are the stage's outputs (kept between runs).
        if others := other_seeds(spec):
            variants = [f"{name}-seed{seed}" for seed in others]
            seeds[name] = {
                **evaluate[name], **{k: v for k, v in pretrain.get(name, {}).items() if k.startswith("model_data")},
                "seeds": ",".join(map(str, spec.seeds)),
                "code": code.family("seeds", kind, [*CODE["pretrain"],
                                                    *(p for p in CODE["evaluate"] if p not in CODE["pretrain"]),
                                                    "pipeline/stages/seeds.py"]),
                "evaluated": f"metrics/{name}/evaluate.json",
                **{f"artifacts{i}": f"artifacts/{variants[min(i, len(variants) - 1)]}" for i in range(most_seeds)},
                **{f"metrics{i}": f"metrics/{variants[min(i, len(variants) - 1)]}" for i in range(most_seeds)}}
        report[name] = {"figures": f"metrics/{name}/seeds.json" if name in seeds else f"metrics/{name}/evaluate.json"}
    code.add("report", CODE["report"])
    return {"fetch": fetch, "derive": derive, "pretrain": pretrain, "evaluate": evaluate, "seeds": seeds,
            "report": report, "code": code, "most_parents": most_parents, "most_task_data": most_task_data,
            "most_model_data": most_model_data,
            "most_seeds": most_seeds}


def generate(folder: Path, project: Path | None = None) -> str:
    tracked = tracks_code(project or folder.parent)
    plan = _plan(_specs(folder))
    fetch, derive, pretrain, evaluate, seeds, report = (
        plan[stage] for stage in ("fetch", "derive", "pretrain", "evaluate", "seeds", "report"))
    code: _Code = plan["code"]
    if not tracked:  # a project that cannot name the package's code: no code slots
        for entries in (fetch, derive, pretrain, evaluate, seeds):
            for item in entries.values():
                del item["code"]

    def code_deps(*slots: str) -> list[str]:
        return list(slots) if tracked else []

    params = [{"specs/${key}.yaml": None}]
    task_slots = [f"${{item.task_data{i}}}" for i in range(plan["most_task_data"])]
    model_slots = [f"${{item.model_data{i}}}" for i in range(plan["most_model_data"])]
    most_seeds = plan["most_seeds"]
    stages: dict = {
        # The fingerprint of each code set, rewritten whenever a file of it changes; a stage that
        # depends on one reruns only when it changed (not for a comment or a docstring).
        "fingerprint": {
            "cmd": "pipeline fingerprint",
            "deps": ["pipeline/stages/dvc.py", *code.outermost()],
            "outs": [{f"{FINGERPRINTS}/{key}.txt": {"cache": False}} for key in sorted(code.sets)]},
        "fetch": {"foreach": fetch, "do": {
            "cmd": "pipeline fetch ${key}",
            "deps": code_deps("${item.code}"),
            "outs": [{"data/${key}": {"persist": True}}]}},
        # A dataset derived from another by a seeded generator: after its parent.
        "derive": {"foreach": derive, "do": {
            "cmd": "pipeline fetch ${key}",
            "deps": [*(f"${{item.parent{i}}}" for i in range(plan["most_parents"])), *code_deps("${item.code}")],
            "outs": [{"data/${key}": {"persist": True}}]}},
        "pretrain": {"foreach": pretrain, "do": {
            # A killed training continues when the stage reruns (its folder persists), and a finished
            # one of the same configuration and code is kept (see `pipeline pretrain --auto-resume`).
            "cmd": "pipeline pretrain specs/${key}.yaml --auto-resume",
            "params": params,
            "deps": ["${item.data}", "${item.encoder}", *model_slots, *code_deps("${item.code}")],
            "outs": [{"artifacts/${key}/pretrain": {"persist": True}}],
            "metrics": [{"metrics/${key}/pretrain.json": {"cache": False}}],
            "plots": [{"metrics/${key}/plots": {"cache": False, "x": "step", "y": "value"}}]}},
        "evaluate": {"foreach": evaluate, "do": {
            "cmd": "pipeline evaluate specs/${key}.yaml",
            "params": params,
            "deps": ["${item.data}", "${item.encoder}", *task_slots, *code_deps("${item.code}")],
            "outs": ["artifacts/${key}/evaluate"],
            "metrics": [{"metrics/${key}/evaluate.json": {"cache": False}}]}},
        "seeds": {"foreach": seeds, "do": {
            # Every seed of the spec's `seeds` (its own seed's training and evaluation, current after
            # the stages above, are kept); metrics/<spec>/seeds.json holds each figure's spread. The
            # other seeds' folders persist: a rerun keeps each seed that is current.
            "cmd": "pipeline run specs/${key}.yaml --seeds ${item.seeds}",
            "params": params,
            "deps": ["${item.data}", "${item.encoder}", "${item.evaluated}", *model_slots, *task_slots,
                     *code_deps("${item.code}")],
            "outs": [*({f"${{item.artifacts{i}}}": {"persist": True}} for i in range(most_seeds)),
                     *({f"${{item.metrics{i}}}": {"persist": True, "cache": False}} for i in range(most_seeds))],
            "metrics": [{"metrics/${key}/seeds.json": {"cache": False}}]}},
        "report": {"foreach": report, "do": {
            "cmd": "pipeline report specs/${key}.yaml",
            "deps": ["metrics/${key}/evaluate.json", "${item.figures}", *code_deps(f"{FINGERPRINTS}/report.txt")],
            "outs": ["reports/${key}.md"]}},
    }
    if not tracked:
        del stages["fingerprint"]
    for name, entries in (("fetch", fetch), ("derive", derive), ("pretrain", pretrain), ("seeds", seeds)):
        if not entries:
            del stages[name]
    for stage in stages.values():
        body = stage.get("do", stage)
        if not body.get("deps", True):
            del body["deps"]
    return HEADER + yaml.safe_dump({"stages": stages}, sort_keys=False, width=120)


def write_fingerprints(project: Path, specs: Path | None = None) -> list[Path]:
    """`pipeline fingerprint`, the body of dvc.yaml's fingerprint stage: write
    fingerprints/<set>.txt in `project` for each code set the stages of its specs depend on
    (from the code of the package that runs); the files written."""
    code: _Code = _plan(_specs(specs or project / "specs"))["code"]
    written = []
    for key, paths in sorted(code.sets.items()):
        target = project / FINGERPRINTS / f"{key}.txt"
        write_fingerprint(target, paths)
        written.append(target)
    return written


def write(folder: Path, target: Path, check: bool = False) -> bool:
    """Write dvc.yaml (or, with `check`, say whether the file on disk is current)."""
    text = generate(folder, target.parent)
    if check:
        return target.is_file() and target.read_text() == text
    target.write_text(text)
    return True
