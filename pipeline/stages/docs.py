"""docs/: one page per plugin (`pipeline docs`; `pipeline docs --check` in tests and CI), generated
from its entry (what it registers), the hand-written `notes.md` beside its module, the specs that
use it and their published results (results/*.json), and what its report hook adds (its own
tables and figures). A page is rewritten whole; pages of plugins no longer registered are removed.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from pipeline import paths, plugins
from pipeline.formatting import table
from pipeline.stages.publish import published, results_table
from pipeline.stages.report import plugin_sections

DOCS_DIR = "docs"
FIGURES = "results"
"""Where the plugins' figures for the docs are drawn (beside the results they plot)."""
MARK = "<!-- written by `pipeline docs` from"
HEADER = (MARK + " the plugin's entry, its notes.md, specs/*.yaml and results/*.json; edit notes.md, not this "
          "file -->\n")


def notes(plugin: plugins.Plugin) -> str:
    """The plugin's hand-written notes (`notes.md` beside its module), or nothing."""
    module = importlib.import_module(plugin.module)
    path = Path(module.__file__).parent / "notes.md" if getattr(module, "__file__", None) else None
    return path.read_text().strip() + "\n" if path is not None and path.is_file() else ""


def _names(capabilities: tuple[type, ...]) -> str:
    return ", ".join(map(plugins.capability_name, capabilities)) or "-"


def _specs(root: Path) -> dict[str, object]:
    """Every spec of specs/ that loads, by name."""
    from pipeline.spec.load import SpecError, load

    found = {}
    for path in sorted((root / "specs").glob("*.yaml")):
        try:
            found[path.stem] = load(path)
        except SpecError:
            continue
    return found


def _kind_of(name: str, specs: dict, seen: tuple[str, ...] = ()) -> str | None:
    """The model kind whose trained model a spec evaluates: its own, or its upstream encoder's."""
    spec = specs.get(name)
    if spec is None or name in seen:
        return None
    if spec.model is not None:
        return spec.model.kind
    return _kind_of(spec.upstream.get("encoder", ""), specs, (*seen, name))


def page(plugin: plugins.Plugin, specs: dict, results: list[dict], root: Path, check: bool) -> tuple[str, bool]:
    """(the plugin's docs page, whether the figures it links are current)."""
    text = [HEADER, f"# {plugin.name}\n\n{plugin.summary}.\n"]
    if written := notes(plugin):
        text.append("\n" + written)
    if plugin.models:
        rows = [[f"`{kind}`", entry.summary, ", ".join(entry.modalities), _names(entry.provides)]
                for kind, entry in sorted(plugin.models.items())]
        text.append("\n## Model kinds\n\n" + table(rows, ("kind", "what it is", "data it trains on", "provides")))
    if plugin.tasks:
        rows = [[f"`{kind}`", entry.summary, _names(entry.needs), entry.data,
                 "yes" if entry.default is not None else "when listed"]
                for kind, entry in sorted(plugin.tasks.items())]
        text.append("\n## Downstream tasks\n\n" + table(rows, ("kind", "what it measures", "needs", "data",
                                                                 "run by default")))
    if plugin.strategies:
        rows = [[f"`{name}`", entry.summary] for name, entry in plugin.strategies.items()]
        text.append("\n## Strategies\n\n" + table(rows, ("name", "what it does")))
    if plugin.datasets:
        rows = [[f"`{source.name}`", source.modality, source.description] for source in plugin.datasets]
        text.append("\n## Datasets\n\n" + table(rows, ("name", "modality", "what it holds")))
    mine = {name for name in specs if _kind_of(name, specs) in plugin.models}
    if mine:
        rows = [[f"[`{name}`](../specs/{name}.yaml)", _kind_of(name, specs) or "-", specs[name].data.dataset,
                 specs[name].description or "-"] for name in sorted(mine)]
        text.append("\n## Specs\n\n" + table(rows, ("spec", "model kind", "dataset", "what it runs")))
    # A published spec whose file is gone still shows, under the model kind it recorded.
    own = [result for result in results if result["spec"] in mine
           or (result["spec"] not in specs and result.get("model") in plugin.models)]
    if own:
        text.append("\n## Results\n\nTest-split figures of each published spec (`results/<spec>.json`): mean ± "
                    "standard deviation over seeds where it ran over several, beside its baselines computed in "
                    "the same runs, and the same figure on the validation split, where settings are chosen. "
                    "`commit`: the git commit each figure was evaluated (and, where it differs, trained) at.\n\n"
                    + results_table(own))
    current = True
    for section in plugin_sections(results, root / FIGURES, f"../{FIGURES}", check, only=plugin.name):
        text.append(f"\n## {section.title}\n\n{section.markdown}")
        current &= section.current
    return "".join(text), current


def write(check: bool = False, root: Path | None = None) -> list[Path]:
    """Write docs/<plugin>.md of every registered plugin (with `check`: write nothing); returns the
    pages that were stale (missing, different, or with a stale figure) or are left over."""
    root = root or paths.project_root()
    folder = root / DOCS_DIR
    specs = _specs(root)
    results = published(root)
    stale = []
    expected = set()
    for name, plugin in sorted(plugins.plugins().items()):
        target = folder / f"{name}.md"
        expected.add(target)
        text, current = page(plugin, specs, results, root, check)
        if not current or not target.is_file() or target.read_text() != text:
            stale.append(target)
            if not check:
                from pipeline.fsutil import write_atomic

                folder.mkdir(parents=True, exist_ok=True)
                write_atomic(target, lambda tmp, text=text: tmp.write_text(text))
    for left in sorted(folder.glob("*.md")) if folder.is_dir() else []:
        if left not in expected and left.read_text().startswith(MARK):
            stale.append(left)
            if not check:
                left.unlink()
    return stale
