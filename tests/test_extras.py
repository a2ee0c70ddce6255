"""A family's heavy dependency comes with its extra (pyproject.toml): without it, the code that needs
it says which extra to install (one PipelineError), and everything else (the plugin registry,
`pipeline models`, `pipeline validate` of every spec, the schema, the import of every plugin's
modules) works; the `all` extra is the union of the family extras; constraints.txt pins everything
`make setup` installs."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.errors import PipelineError
from pipeline.extras import pinned, require

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
EXTRAS = PYPROJECT["project"]["optional-dependencies"]
NOT_FAMILIES = {"all", "dev", "bench", "ray"}
"""Extras that bring no family: `all` itself, the tools (sweeps, development) and the benchmarks."""
GPL_FAMILIES = {"nengo"}
"""Family extras under the GPL: never in `all` (which the MIT package's users install without
reading every licence); `make setup` installs them beside it for the tests."""

IMPORT_NAMES = {"faiss-cpu": "faiss", "tokenizers": "tokenizers", "ncps": "ncps", "torchdiffeq": "torchdiffeq",
                "reservoirpy": "reservoirpy", "laplace-torch": "laplace", "nengo": "nengo",
                "gymnasium": "gymnasium"}
"""The top-level module of each family extra's distribution."""


def name(requirement: str) -> str:
    """A requirement's distribution name, normalised (PEP 503)."""
    return re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9._-]+", requirement).group(0)).lower()


def mask(monkeypatch: pytest.MonkeyPatch, module: str) -> None:
    """`import module` (or any submodule) raises ImportError, as if it were not installed."""
    for loaded in [m for m in sys.modules if m == module or m.startswith(module + ".")]:
        monkeypatch.setitem(sys.modules, loaded, None)
    monkeypatch.setitem(sys.modules, module, None)


def refuses(extra: str, call) -> None:
    with pytest.raises(PipelineError) as raised:
        call()
    message = str(raised.value)
    assert f"[{extra}] extra" in message and f"pip install 'pipeline[{extra}]'" in message, message
    assert "make setup" in message and "\n" not in message


# (extra, masked module, the code that needs it)
def _remind_quantiser():
    from pipeline.models.continual.strategies.quantizer import train_centroids

    train_centroids(np.zeros((16, 4), np.float32), 2, 1)


def _voken_index():
    from pipeline.models.voken.vokenize import pool_index

    pool_index(torch.zeros(3, 4))


def _train_tokenizer():
    from pipeline.data.voken.tokenizer import train_tokenizer

    train_tokenizer(["a few words", "and a few more"], vocab_size=40)


def _load_tokenizer(tmp_path: Path):
    from pipeline.data.voken.tokenizer import load_tokenizer

    load_tokenizer(tmp_path)


def _cfc():
    from pipeline.models.continuous import CfCSpec
    from pipeline.models.continuous.module import NCPSCore

    NCPSCore(CfCSpec(kind="cfc", units=8), 2)


def _ncp_ltc():
    from pipeline.models.continuous import LTCSpec, WiringSpec
    from pipeline.models.continuous.module import NCPSCore

    NCPSCore(LTCSpec(kind="ltc", units=8, wiring=WiringSpec(kind="ncp", outputs=2)), 2)


def _ode_block():
    from pipeline.models.continuous import NeuralODESpec
    from pipeline.models.continuous.ode import ODEBlock, ODEFunc

    ODEBlock(ODEFunc(4), NeuralODESpec(kind="neural_ode", channels=4))


def _mackey_glass(tmp_path: Path):
    from pipeline.data.sequences import generate_mackey_glass

    generate_mackey_glass(tmp_path)


def _laplace():
    from pipeline.models.ood import OODNetSpec
    from pipeline.models.ood.module import OODNet
    from pipeline.spec.components import TrainSpec

    OODNet(OODNetSpec(channels=[2], hidden=4, laplace={}), TrainSpec(), (1, 28, 28), 10).fit_laplace(None)


def _nengo_network():
    from pipeline.models.nengo import NengoSpec
    from pipeline.models.nengo.network import draw_tuning

    draw_tuning(NengoSpec(kind="nengo", neurons=4), 1, np.random.RandomState(0))


def _environment(tmp_path: Path):
    from pipeline.models.rl.environments import CARTPOLE, generator

    generator(CARTPOLE)(tmp_path)


CASES = [
    ("continual", "faiss", lambda tmp: _remind_quantiser()),
    ("voken", "faiss", lambda tmp: _voken_index()),
    ("voken", "tokenizers", lambda tmp: _train_tokenizer()),
    ("voken", "tokenizers", _load_tokenizer),
    ("continuous", "ncps", lambda tmp: _cfc()),
    ("continuous", "ncps", lambda tmp: _ncp_ltc()),
    ("continuous", "torchdiffeq", lambda tmp: _ode_block()),
    ("continuous", "reservoirpy", _mackey_glass),
    ("ood", "laplace", lambda tmp: _laplace()),
    ("nengo", "nengo", lambda tmp: _nengo_network()),
    ("rl", "gymnasium", _environment),
]


@pytest.mark.parametrize(("extra", "module", "call"), CASES,
                         ids=[f"{extra}-{module}-{n}" for n, (extra, module, _) in enumerate(CASES)])
def test_a_missing_extra_is_named(extra, module, call, monkeypatch, tmp_path):
    for requirement in EXTRAS[extra]:  # every case is of a module its extra brings
        if IMPORT_NAMES[name(requirement)] == module:
            break
    else:
        pytest.fail(f"the [{extra}] extra does not bring {module}")
    mask(monkeypatch, module)
    refuses(extra, lambda: call(tmp_path))


def test_every_family_dependency_has_a_case():
    covered = {(extra, module) for extra, module, _ in CASES}
    wanted = {(extra, IMPORT_NAMES[name(r)]) for extra, requirements in EXTRAS.items() if extra not in NOT_FAMILIES
              for r in requirements}
    assert wanted == covered


def test_require_returns_the_module_and_tells_a_broken_install_from_a_missing_one(monkeypatch):
    import json

    assert require("json", "x", "y") is json
    assert require("importlib.metadata", "x", "y") is sys.modules["importlib.metadata"]
    mask(monkeypatch, "json")
    with pytest.raises(PipelineError, match=r"^reading it needs json, from the \[x\] extra: pip install "
                                            r"'pipeline\[x\]' \(or `make setup`, which installs every extra\)$"):
        require("json.decoder", "x", "reading it")
    # installed but broken: a dependency of its own missing, a shared library missing; the error is shown too
    monkeypatch.setattr(sys, "meta_path", [_Broken(), *sys.meta_path])
    with pytest.raises(PipelineError, match=r"\[x\] extra.*; importing broken_dep failed: No module named 'libdep'"):
        require("broken_dep", "x", "it")
    with pytest.raises(PipelineError, match=r"\[x\] extra.*; importing broken_lib failed: libfoo\.so"):
        require("broken_lib", "x", "it")


class _Broken:
    """broken_dep: installed, but a module it imports is not; broken_lib: its shared library is missing."""

    def find_spec(self, fullname, path, target=None):
        if fullname == "broken_dep":
            raise ModuleNotFoundError("No module named 'libdep'", name="libdep")
        if fullname == "broken_lib":
            raise ImportError("libfoo.so: cannot open shared object file")
        return None


BLOCKED = sorted({*IMPORT_NAMES.values(), "ray", "optuna"})

WITHOUT_EXTRAS = textwrap.dedent("""
    import sys

    BLOCKED = set(sys.argv[1].split(","))

    class Block:
        def find_spec(self, fullname, path, target=None):
            if fullname.partition(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {fullname!r} (blocked)", name=fullname)
            return None

    sys.meta_path.insert(0, Block())

    from pathlib import Path

    from pipeline import plugins
    from pipeline.cli import app
    from pipeline.spec.schema import schema_text

    specs = sorted(str(p) for p in Path("specs").glob("*.yaml"))
    assert specs
    app(["models"], standalone_mode=False)
    app(["validate", *specs], standalone_mode=False)
    schema_text()

    # every module a plugin names imports too: only the code that runs needs the extra
    targets = []
    for plugin in plugins.plugins().values():
        targets += [e.module for e in (*plugin.models.values(), *plugin.strategies.values(), *plugin.tasks.values())]
        targets += [e.predictions for e in plugin.models.values() if e.predictions]
        targets += [t for s in plugin.datasets for t in (s.reader, s.generator) if t]
        targets += [plugin.report] if plugin.report else []
    for target in targets:
        module, _, attribute = target.partition(":")
        __import__(module)
    loaded = sorted(m for m in BLOCKED if sys.modules.get(m) is not None)
    assert not loaded, loaded
    print(f"imported {len(targets)} plugin targets")
""")


def test_registry_validation_and_plugin_modules_work_without_any_extra():
    result = subprocess.run([sys.executable, "-c", WITHOUT_EXTRAS, ",".join(BLOCKED)], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "model kinds (model.kind):" in result.stdout
    specs = sorted((ROOT / "specs").glob("*.yaml"))
    assert result.stdout.count("\nok  ") + result.stdout.startswith("ok  ") >= len(specs), result.stdout
    assert "plugin targets" in result.stdout


def test_all_is_the_union_of_the_family_extras_but_the_gpl_ones():
    families = {extra: requirements for extra, requirements in EXTRAS.items()
                if extra not in NOT_FAMILIES | GPL_FAMILIES}
    assert {"continual", "voken", "continuous"} <= set(families)
    union = {r.replace(" ", "") for requirements in families.values() for r in requirements}
    assert {r.replace(" ", "") for r in EXTRAS["all"]} == union
    assert len(EXTRAS["all"]) == len(union), "a requirement listed twice in `all`"
    # each family extra is named after the family plugin that needs it
    assert set(families) <= set(PYPROJECT["project"]["entry-points"]["pipeline.plugins"])
    assert GPL_FAMILIES <= set(PYPROJECT["project"]["entry-points"]["pipeline.plugins"])
    core = {name(r) for r in PYPROJECT["project"]["dependencies"]}
    gpl = {name(r) for extra in GPL_FAMILIES for r in EXTRAS[extra]}
    assert not core & {name(r) for r in union}, "a family's dependency is a core dependency too"
    assert not gpl & (core | {name(r) for r in EXTRAS["all"]}), "a GPL extra reaches the core or `all`"


def test_make_setup_installs_every_extra_from_the_constraints():
    makefile = (ROOT / "Makefile").read_text()
    assert "pip install -q -e '.[all,nengo,dev]' -c constraints.txt" in makefile
    assert re.search(r"^\$\(VENV\)/\.installed:.*\bconstraints\.txt\b", makefile, re.M)
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            distribution, _, version = line.partition("==")
            pins[name(distribution)] = version.strip()
    torch_pins = re.search(r"pip install -q torch==(\S+) torchvision==(\S+)", makefile)
    assert (pins["torch"], pins["torchvision"]) == torch_pins.groups(), "constraints.txt and the Makefile differ"
    assert "pipeline" not in pins and not {"snntorch", "avalanche-lib"} & set(pins)
    try:
        needed = pinned()
    except PipelineError as err:
        pytest.skip(f"this environment lacks an extra ({err})")
    missing = {name(line) for line in needed} - set(pins)
    assert not missing, f"constraints.txt lacks {sorted(missing)}: run `make constraints`"
