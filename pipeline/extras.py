"""Optional dependencies. A family's heavy dependency (faiss, tokenizers, ncps, torchdiffeq,
reservoirpy) comes with its extra in pyproject.toml (`pip install 'pipeline[continual]'`), not with
the core, and is imported here, lazily, by the function that needs it: the plugin registry,
`pipeline models`, `pipeline validate` and the schema never import it, and a missing one is one
message naming the extra that brings it.

`python -m pipeline.extras` prints constraints.txt (what `make constraints` writes): the installed
version of every distribution that the project with its extras `all`, `nengo` and `dev` needs, found by
walking the installed metadata from `pipeline` down, so that a package installed by hand (or by
the bench extra alone) is left out.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from pipeline.errors import PipelineError

CONSTRAINED_EXTRAS = ("all", "nengo", "dev")
"""The extras `make setup` installs, and constraints.txt pins (nengo, GPL, is kept out of `all`)."""


def require(module: str, extra: str, what: str) -> ModuleType:
    """`module` imported (a dotted name, e.g. "ncps.torch"); a PipelineError naming `extra` when
    it is not installed. `what` names what needs it, for the message."""
    top = module.partition(".")[0]
    hint = (f"{what} needs {top}, from the [{extra}] extra: pip install 'pipeline[{extra}]' "
            "(or `make setup`, which installs every extra)")
    try:
        importlib.import_module(top)  # first: a submodule already imported is found without its package
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name is not None and err.name.partition(".")[0] == top:
            raise PipelineError(hint) from None
        raise PipelineError(f"{hint}; importing {module} failed: {err}") from err
    except ImportError as err:  # installed but broken (a missing shared library, a mismatched build)
        raise PipelineError(f"{hint}; importing {module} failed: {err}") from err


def pinned(distribution: str = "pipeline", extras: tuple[str, ...] = CONSTRAINED_EXTRAS) -> list[str]:
    """`name==version` of every installed distribution that `distribution` with `extras` requires,
    transitively (environment markers evaluated here), sorted by name; `distribution` itself left out."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import distribution as installed

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    root = canonicalize_name(distribution)
    seen: set[tuple[str, str]] = set()
    found: dict[str, str] = {}
    queue = [(root, extra) for extra in ("", *extras)]
    while queue:
        name, extra = queue.pop()
        if (name, extra) in seen:
            continue
        seen.add((name, extra))
        try:
            dist = installed(name)
        except PackageNotFoundError:
            raise PipelineError(f"{name} is required but not installed: run `make setup`") from None
        if name != root:
            found[name] = f"{dist.metadata['Name']}=={dist.version}"
        for line in dist.requires or []:
            requirement = Requirement(line)
            if requirement.marker is not None and not requirement.marker.evaluate({"extra": extra}):
                continue
            if requirement.marker is None and extra:
                continue  # an unconditional requirement is reached through the distribution's "" entry
            child = canonicalize_name(requirement.name)
            queue.extend((child, sub) for sub in ("", *sorted(requirement.extras)))
    return [found[name] for name in sorted(found)]


HEADER = """\
# constraints.txt: the exact version of every package that the pipeline with its extras `all`,
# `nengo` and `dev` needs, transitively (torch and torchvision as the Makefile pins them; the bench
# extra's own packages and the pipeline itself left out). `make setup` installs with it:
#   pip install -e '.[all,nengo,dev]' -c constraints.txt
# Written by `make constraints` (python -m pipeline.extras) from the versions installed in .venv:
# to move a pin, change its line and run `make setup` (then `make constraints` for what that pulls in).
"""


if __name__ == "__main__":
    print(HEADER + "\n".join(pinned()))
