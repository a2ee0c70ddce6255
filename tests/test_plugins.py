"""The plugin contract: the core names no family, task or strategy; every family keeps the
capabilities it declares; plugins installed through an entry point (the toy plugins of
tests/plugins/, made a distribution on PYTHONPATH) appear everywhere the project's own do and
train through `dvc repro`; a plugin registered at run time joins the spec unions whenever it comes."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import capabilities, plugins
from pipeline.spec.load import SpecError, load_text

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "pipeline"
TOYS = ROOT / "tests" / "plugins"
BIN = Path(sys.executable).parent

CORE = [
    *sorted((PACKAGE / "stages").glob("*.py")),
    *sorted((PACKAGE / "spec").glob("*.py")),
    *(PACKAGE / name for name in ("cli.py", "plots.py", "tracking.py", "upstream.py", "plugins.py", "capabilities.py",
                                  "formatting.py", "aggregate.py", "callbacks.py", "provenance.py", "paths.py",
                                  "errors.py", "fsutil.py", "lightning_logger.py", "__main__.py")),
    PACKAGE / "evaluators" / "__init__.py", PACKAGE / "evaluators" / "context.py", PACKAGE / "models" / "__init__.py",
    PACKAGE / "models" / "base.py", PACKAGE / "models" / "backbones.py", PACKAGE / "data" / "datamodule.py",
]
"""The modules that must work for any plugin: they may name none."""

SHARED_MODELS = {"pipeline.models", "pipeline.models.base", "pipeline.models.backbones"}


def registered_names() -> set[str]:
    families = {name for name, plugin in plugins.plugins().items() if plugin.models}
    return {*plugins.models(), *plugins.tasks(), *plugins.strategies(), *families}


def docstrings(tree: ast.AST) -> set[int]:
    """The ids of the string constants that are docstrings (prose may mention a family)."""
    found = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list):
            for statement in body:  # a docstring, and a bare string after an assignment (an attribute's)
                if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant) \
                        and isinstance(statement.value.value, str):
                    found.add(id(statement.value))
    return found


def named_kinds(path: Path, names: set[str]) -> list[str]:
    """Where a module names a registered kind, strategy or family: a string literal equal to one
    (or a glob or path made of one), or an import of a family's package."""
    tree = ast.parse(path.read_text())
    prose = docstrings(tree)
    where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in prose:
            text = node.value
            for name in names:
                if text == name or text.startswith((f"{name}_*", f"{name}/", f"{name}.")):
                    found.append(f"{where}:{node.lineno}: {text!r}")
        elif isinstance(node, ast.ImportFrom | ast.Import):
            modules = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            if isinstance(node, ast.ImportFrom) and node.module in ("pipeline.models", "pipeline.evaluators"):
                modules = [f"{node.module}.{alias.name}" for alias in node.names]
            for module in modules:
                parts = module.split(".")
                if parts[:2] in (["pipeline", "models"], ["pipeline", "evaluators"]) and len(parts) > 2 \
                        and ".".join(parts[:3]) not in SHARED_MODELS and parts[2] not in ("context", "features"):
                    found.append(f"{where}:{node.lineno}: imports {module}")
    return found


def test_the_core_names_no_kind_family_or_strategy():
    names = registered_names()
    assert {"swav", "continual", "linear_probe", "replay", "spike_stats"} <= names  # the check has teeth
    found = [hit for path in CORE for hit in named_kinds(path, names)]
    assert not found, "core modules that name a plugin's kind (move it into the plugin):\n" + "\n".join(found)


def test_the_check_finds_a_kind_named_in_a_module(tmp_path: Path):
    """The negative control of the test above: a literal, a glob and an import are each caught."""
    module = tmp_path / "names_a_kind.py"
    module.write_text('"""Mentions swav in prose, which is fine."""\n'
                      'from pipeline.models.continual import strategy_label\n'
                      'KIND = "swav"\nPATTERN = "voken_lm_*.json"\n')
    found = named_kinds(module, registered_names())
    assert [hit.split(": ", 1)[1] for hit in found] == [
        "imports pipeline.models.continual", "'swav'", "'voken_lm_*.json'"]


@pytest.mark.parametrize("kind", sorted(plugins.models()))
def test_every_model_has_the_members_of_each_capability_it_declares(kind: str):
    entry = plugins.models()[kind]
    model_class = entry.load_class()
    for capability in entry.provides:
        members = capabilities.members(capability)
        assert members, f"{capability.__name__} declares no members"
        lacking = [name for name in members if not hasattr(model_class, name) and name != "encoder"]
        assert not lacking, f"{kind} provides {capability.__name__} but {model_class.__name__} lacks {lacking}"


def test_a_task_needing_what_a_model_lacks_is_refused_naming_the_capability():
    with pytest.raises(SpecError) as caught:
        load_text("name: x\nmodel: {kind: swav}\ndownstream: [{kind: network}]\n", "x.yaml")
    assert "'network' needs a model that provides Classifier; model kind 'swav' provides Encoder" in str(caught.value)


def test_a_strategy_registered_after_the_spec_classes_were_built_joins_the_union(monkeypatch: pytest.MonkeyPatch):
    """Registration order does not matter: the unions are rebuilt when the set of plugins changes."""
    monkeypatch.syspath_prepend(str(TOYS))
    spec = "name: x\nmodel: {kind: continual, strategy: {name: l2_anchor, strength: 0.5}}\n"
    with pytest.raises(SpecError, match="unknown kind 'l2_anchor'"):
        load_text(spec, "x.yaml")
    import toy_strategy

    plugins.register(toy_strategy.PLUGIN)
    try:
        loaded = load_text(spec, "x.yaml")
        assert type(loaded.model.strategy).__name__ == "L2AnchorSpec"
        assert loaded.model.strategy.strength == 0.5
        with pytest.raises(plugins.PluginError, match="registers strategy 'l2_anchor', which plugin 'toy_strategy'"):
            plugins.register(plugins.Plugin("again", "a second owner", strategies=toy_strategy.PLUGIN.strategies))
    finally:
        plugins.unregister("toy_strategy")
    with pytest.raises(SpecError):
        load_text(spec, "x.yaml")


def test_the_stages_import_one_way():
    """No import cycle among the stages and the modules they share, counting imports inside
    functions (which hide a cycle from Python, not from a reader)."""
    modules = {f"pipeline.stages.{path.stem}": path for path in (PACKAGE / "stages").glob("*.py")}
    modules |= {"pipeline.upstream": PACKAGE / "upstream.py", "pipeline.aggregate": PACKAGE / "aggregate.py",
                "pipeline.formatting": PACKAGE / "formatting.py", "pipeline.plugins": PACKAGE / "plugins.py"}
    graph = {}
    for name, path in modules.items():
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
            elif isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
        graph[name] = {other for other in imported if other in modules and other != name}
    graph.pop("pipeline.stages.__init__", None)  # the package re-exports its stages; nothing imports it back

    def cycle_from(start: str, path: tuple[str, ...]) -> tuple[str, ...] | None:
        for other in graph.get(start, ()):
            if other in path:
                return (*path[path.index(other):], other)
            if (found := cycle_from(other, (*path, other))) is not None:
                return found
        return None

    for name in graph:
        cycle = cycle_from(name, (name,))
        assert cycle is None, " -> ".join(cycle)
    assert "pipeline.stages.common" not in graph["pipeline.upstream"]


# ---------------------------------------------------------------- plugins installed through an entry point

ENTRY_POINTS = """\
[pipeline.plugins]
toy_dataset = toy_dataset:PLUGIN
toy_family = toy_family.plugin:PLUGIN
toy_strategy = toy_strategy:PLUGIN
toy_task = toy_task:PLUGIN
"""

TOY_SPEC = """\
name: toy
data: {dataset: toy_blobs, batch_size: 50}
model: {kind: toy_mlp, hidden: [32]}
train: {max_epochs: 3, optimizer: {lr: 0.01}}
downstream:
  - {kind: toy_topk, k: 2}
  - {kind: network}
  - {kind: linear_probe, weight_decays: [0.001], max_iter: 50}
"""

TOY_CONTINUAL = """\
name: toy_continual
data: {dataset: toy_blobs, batch_size: 50}
model:
  kind: continual
  hidden: [32]
  scenario: {experiences: 2}
  strategy: {name: l2_anchor, strength: 0.1}
train: {max_epochs: 2, optimizer: {lr: 0.01}}
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, str]:
    """An environment in which the toy plugins are an installed distribution: its dist-info (the
    metadata pip writes, entry points included) and its packages on PYTHONPATH."""
    site = tmp_path_factory.mktemp("site")
    info = site / "toy_plugins-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-plugins\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(TOYS)]), "MPLBACKEND": "Agg",
           "DVC_NO_ANALYTICS": "1", "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def pipeline(env: dict[str, str], *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def test_installed_plugins_appear_in_models_and_the_schema(installed: dict[str, str], tmp_path: Path):
    listed = pipeline(installed, "models")
    assert listed.returncode == 0, listed.stderr
    for line in ("toy_mlp ", "toy_topk ", "l2_anchor ", "toy_blobs ", "toy_family "):
        assert any(row.startswith(line) for row in listed.stdout.splitlines()), line
    assert "needs Scorer" in listed.stdout
    target = tmp_path / "schema.json"
    written = pipeline(installed, "schema", "--output", str(target))
    assert written.returncode == 0, written.stderr
    schema = json.loads(target.read_text())
    assert "toy_blobs" in schema["$defs"]["DataSpec"]["properties"]["dataset"]["enum"]
    assert {"ToyMLPSpec", "TopKSpec", "L2AnchorSpec"} <= set(schema["$defs"])
    # Without the distribution, the project's own schema is the committed one: nothing of the toys.
    assert "toy_mlp" not in (ROOT / "specs" / "schema.json").read_text()


def test_installed_plugins_validate_and_refuse_like_the_projects_own(installed: dict[str, str], tmp_path: Path):
    for name, text in (("toy", TOY_SPEC), ("toy_continual", TOY_CONTINUAL)):
        (tmp_path / f"{name}.yaml").write_text(text)
    done = pipeline(installed, "validate", str(tmp_path / "toy.yaml"), str(tmp_path / "toy_continual.yaml"))
    assert done.returncode == 0, done.stderr
    (tmp_path / "wrong.yaml").write_text("name: wrong\nmodel: {kind: swav}\ndownstream: [{kind: toy_topk}]\n")
    refused = pipeline(installed, "validate", str(tmp_path / "wrong.yaml"))
    assert refused.returncode == 2
    assert "'toy_topk' needs a model that provides Scorer" in refused.stderr
    (tmp_path / "typo.yaml").write_text(TOY_CONTINUAL.replace("l2_anchor", "l2_ancor"))
    refused = pipeline(installed, "validate", str(tmp_path / "typo.yaml"))
    assert "did you mean 'l2_anchor'?" in refused.stderr


@pytest.mark.slow
def test_installed_plugins_train_and_evaluate_through_dvc_repro(installed: dict[str, str], tmp_path: Path):
    """The toy dataset is generated by the fetch stage, the toy family trains on it and is scored
    by the toy task; a continual learner trains on it with the toy strategy: all by `dvc repro`."""
    project = tmp_path / "project"
    (project / "specs").mkdir(parents=True)
    (project / "dvc.yaml").write_text("stages: {}\n")
    for name, text in (("toy", TOY_SPEC), ("toy_continual", TOY_CONTINUAL)):
        (project / "specs" / f"{name}.yaml").write_text(text)
    env = {**installed, "PIPELINE_ROOT": str(project), "OMP_NUM_THREADS": "1"}
    for command in (["git", "init", "-q"], ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q",
                                             "--allow-empty", "-m", "init"], ["dvc", "init", "-q"]):
        subprocess.run(command, cwd=project, env=env, check=True, capture_output=True)
    assert pipeline(env, "dvc", cwd=project).returncode == 0
    stages = (project / "dvc.yaml").read_text()
    assert "fetch" in stages
    assert "toy_blobs" in stages
    done = subprocess.run(["dvc", "repro"], cwd=project, env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    toy = json.loads((project / "metrics" / "toy" / "evaluate.json").read_text())
    (top_k,) = [h for h in toy["headlines"] if h["task"] == "toy_topk"]
    assert top_k["baselines"]["chance"] == 0.5
    assert top_k["value"] > 0.9  # the blobs are well apart: an MLP ranks the true class in its top 2
    network = next(h for h in toy["headlines"] if h["task"] == "network")
    assert network["value"] > 0.6
    continual = json.loads((project / "metrics" / "toy_continual" / "evaluate.json").read_text())
    assert continual["continual"]["memory_bytes"] > 0  # the anchor: a copy of the weights, counted
    assert 0 < continual["continual"]["average_accuracy"] <= 1
