"""The plugin registry. Every model family, downstream task, continual strategy and dataset arrives
as a `Plugin`, found through the entry-point group `pipeline.plugins` (this project's own families
are listed in its pyproject.toml like any separately installed package's) or handed to `register`.
Every union of the spec (model kinds, task kinds, strategies, datasets), the JSON Schema, the
default task lists, `pipeline models` and `pipeline dvc` are built from what is registered here,
so this module, and the core around it, names no family, task, strategy or dataset.

What a task needs of a model and what a model provides are capabilities: `typing.Protocol`
classes (see `pipeline.capabilities`), checked when a spec is validated.

Importing this module imports only the standard library and `pipeline.errors`; a plugin's entry is
pure data (pydantic spec classes and dotted paths), so validating a spec loads no torch.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Literal

from pipeline.errors import PipelineError

GROUP = "pipeline.plugins"
"""The entry-point group: `name = "package.module:PLUGIN"` in a distribution's metadata."""


def resolve(target: str) -> Any:
    """`package.module:attribute` -> the attribute."""
    module_name, _, name = target.partition(":")
    value = importlib.import_module(module_name)
    for part in name.split(".") if name else ():
        value = getattr(value, part)
    return value


def capability_name(capability: type) -> str:
    """How messages and `pipeline models` name a capability: its class name."""
    return capability.__name__


@dataclass(frozen=True)
class ModelEntry:
    """A model kind (`model.kind`)."""

    spec: type | Callable[[], type]
    """Its spec section, a pydantic model with `kind: Literal[<kind>]`; or a function returning it
    (built when the spec union is, after every plugin is known: a spec with a union of its own,
    such as the continual learner's strategies)."""
    module: str
    """`package.module:ClassName` of the LightningModule, built as
    ClassName(model_spec, train_spec, input_shape, num_classes)."""
    summary: str
    modalities: tuple[str, ...]
    """The dataset modalities (see DatasetSource.modality) it trains on; a spec pairing it with
    another is rejected at validation."""
    provides: tuple[type, ...] = ()
    """Capabilities (`typing.Protocol` classes) its trained model offers downstream tasks."""
    takes_encoder: bool = False
    """Whether it can start from an upstream spec's trained encoder (`upstream.encoder`), which
    it then receives as the `encoder` keyword of its constructor."""
    single_process: bool = False
    """Whether it trains in one process only (its protocol keeps state that one process updates
    between fits, a continual learner's buffers say): a spec asking for DDP is rejected."""
    cpu_only: bool = False
    """Whether it runs on the CPU whatever the machine has (a simulator or a numpy loop that a GPU
    would not speed up): `train.accelerator: auto` picks the CPU for it, and any other but `cpu` is
    refused."""
    default_tasks: Callable[[str], list[dict]] | None = None
    """The downstream tasks (as plain data) of a spec that lists none, given the kind of its data
    ("labelled", "series", ...); None: every default task whose needs it provides."""
    predictions: str | None = None
    """`package.module:function` (context, split) -> predicted labels [N]: how the evaluation reads
    the network's decisions when its own pass does more than `predict` (and shares it with another
    task); None: `predict` in batches."""

    def spec_class(self) -> type:
        return self.spec if isinstance(self.spec, type) else self.spec()

    def load_class(self) -> Any:
        return resolve(self.module)


@dataclass(frozen=True)
class TaskEntry:
    """A downstream task (`downstream[].kind`)."""

    spec: type
    module: str
    """`package.module` with `run(task_spec, context) -> TaskResult`."""
    needs: tuple[type, ...]
    """Capabilities the model must provide; a spec whose model does not is rejected."""
    summary: str
    writes: str | None = None
    """The modality of the dataset it writes into artifacts/<spec>/evaluate/dataset/ for other
    specs to train on (`upstream: {data: <spec>}`), if it writes one."""
    data: Literal["labelled", "series", "video", "image-text", "any"] = "labelled"
    """The data it scores: labelled (class labels), series (a `target` field to forecast), video
    (frame sequences [T, C, H, W], with their items' classes as `labels`), image-text (images with
    their captions' token ids as `tokens`), any (it reads a dataset of its own, or none)."""
    default: int | None = None
    """Its place among the default tasks (run in ascending order) of a spec that lists none and
    whose model provides what it needs; None: run only when listed."""
    reads_features: bool = False
    """Whether it reads the encoder's frozen features of the spec's data (which the evaluate stage
    then extracts once, seeded, for every such task)."""

    def load(self) -> Any:
        return importlib.import_module(self.module).run


@dataclass(frozen=True)
class StrategyEntry:
    """A continual-learning strategy (`model.strategy.name`)."""

    spec: type
    """Its spec section, a pydantic model with `name: Literal[<name>]`."""
    module: str
    """`package.module:ClassName` of its `Strategy`."""
    summary: str

    def load_class(self) -> Any:
        return resolve(self.module)


@dataclass(frozen=True)
class Plugin:
    """What one package adds: model kinds, tasks, strategies, datasets, and optional hooks."""

    name: str
    summary: str
    models: Mapping[str, ModelEntry] = field(default_factory=dict)
    tasks: Mapping[str, TaskEntry] = field(default_factory=dict)
    strategies: Mapping[str, StrategyEntry] = field(default_factory=dict)
    datasets: tuple[Any, ...] = ()
    """`pipeline.data.source.DatasetSource`s."""
    report: str | None = None
    """`package.module:function` (results, figures, link, check) -> [formatting.Section]: the
    plugin's own comparison tables and figures, for `pipeline report` and its docs page, from the
    evaluated or published results of every spec (dicts with `spec`, `description`, `headlines`,
    `metrics`, `runs`...; it picks those it knows). Figures are drawn into the folder `figures`
    (none: no figures) and linked as `link`/<file>; with `check`, only whether they are current.
    The hand-written part of the plugin's docs page is the `notes.md` beside its module."""
    module: str = ""
    """The module the entry was read from (set on registration)."""


class PluginError(PipelineError):
    """A plugin that cannot be registered (a name taken by another, an entry point that fails)."""


@dataclass
class _State:
    plugins: dict[str, Plugin] = field(default_factory=dict)
    discovered: bool = False
    generation: int = 0


_state = _State()
_lock = threading.RLock()


def _discover() -> None:
    with _lock:
        if _state.discovered:
            return
        _state.discovered = True  # before loading: a plugin's module may ask for the registry
        points = sorted(entry_points(group=GROUP), key=lambda p: p.name)
        if not points:
            raise PluginError(f"no plugin is installed (entry point group {GROUP!r} is empty): the pipeline's own "
                              "families register through its package metadata, so install it, `make setup` or "
                              "`pip install -e .`, rather than running it from a folder on PYTHONPATH")
        for point in points:
            try:
                plugin = point.load()
            except Exception as err:  # a broken plugin names itself, not a traceback deep inside it
                raise PluginError(f"plugin {point.name!r} ({point.value}, entry point group {GROUP!r}) failed to "
                                  f"load: {type(err).__name__}: {err}") from err
            _add(plugin, point.value.partition(":")[0])


def _add(plugin: Plugin, module: str) -> None:
    if not isinstance(plugin, Plugin):
        raise PluginError(f"{module}: a plugin entry point must name a pipeline.plugins.Plugin, not "
                          f"{type(plugin).__name__}")
    if plugin.name in _state.plugins:
        if _state.plugins[plugin.name].module == module:
            return
        raise PluginError(f"plugin name {plugin.name!r} is taken by {_state.plugins[plugin.name].module}")
    for what, noun in (("models", "model kind"), ("tasks", "task"), ("strategies", "strategy")):
        taken = {name: other.name for other in _state.plugins.values() for name in getattr(other, what)}
        for name in getattr(plugin, what):
            if name in taken:
                raise PluginError(f"plugin {plugin.name!r} registers {noun} {name!r}, which plugin "
                                  f"{taken[name]!r} registered first")
    taken = {source.name: other.name for other in _state.plugins.values() for source in other.datasets}
    for source in plugin.datasets:
        if source.name in taken:
            raise PluginError(f"plugin {plugin.name!r} registers dataset {source.name!r}, which plugin "
                              f"{taken[source.name]!r} registered first")
    _state.plugins[plugin.name] = _with_module(plugin, module)
    _state.generation += 1


def _with_module(plugin: Plugin, module: str) -> Plugin:
    from dataclasses import replace

    return replace(plugin, module=module) if not plugin.module else plugin


def register(plugin: Plugin, module: str = "") -> None:
    """Add a plugin at run time (after those of the entry points). Spec classes built from the
    registry are rebuilt at their next use."""
    with _lock:
        _discover()
        _add(plugin, module or plugin.module or plugin.name)


def unregister(name: str) -> None:
    """Remove a plugin registered at run time (tests)."""
    with _lock:
        _state.plugins.pop(name, None)
        _state.generation += 1


def generation() -> int:
    """Changes whenever the set of plugins does: what classes built from it are cached by."""
    _discover()
    return _state.generation


def plugins() -> dict[str, Plugin]:
    _discover()
    return dict(_state.plugins)


def models() -> dict[str, ModelEntry]:
    return {kind: entry for plugin in plugins().values() for kind, entry in plugin.models.items()}


def tasks() -> dict[str, TaskEntry]:
    return {kind: entry for plugin in plugins().values() for kind, entry in plugin.tasks.items()}


def strategies() -> dict[str, StrategyEntry]:
    return {name: entry for plugin in plugins().values() for name, entry in plugin.strategies.items()}


def datasets() -> dict[str, Any]:
    """name -> DatasetSource."""
    return {source.name: source for plugin in plugins().values() for source in plugin.datasets}


def owner(kind: str) -> Plugin | None:
    """The plugin that registers a model kind."""
    return next((plugin for plugin in plugins().values() if kind in plugin.models), None)


def cached(build: Callable[[], Any]) -> Callable[[], Any]:
    """`build()` once per set of plugins (a spec class made of the registered unions)."""
    memo: dict[int, Any] = {}

    def current() -> Any:
        key = generation()
        with _lock:
            if key not in memo:
                memo.clear()
                memo[key] = build()
            return memo[key]

    current.__doc__ = build.__doc__
    current.__name__ = build.__name__
    return current


def build_model(spec, input_shape: tuple[int, ...], num_classes: int, **extra) -> Any:
    """The spec's model, as its family's LightningModule (freshly initialised)."""
    return models()[spec.model.kind].load_class()(spec.model, spec.train, input_shape, num_classes, **extra)


def default_tasks(provides: tuple[type, ...], data: str) -> list[dict]:
    """Every default task a model providing `provides` can feed on data of this kind, in order."""
    found = [(entry.default, kind) for kind, entry in tasks().items()
             if entry.default is not None and provides_all(provides, entry.needs) and entry.data in (data, "any")]
    return [{"kind": kind} for _, kind in sorted(found)]


def provides_all(provides: tuple[type, ...], needs: tuple[type, ...]) -> bool:
    return not missing(provides, needs)


def missing(provides: tuple[type, ...], needs: tuple[type, ...]) -> list[type]:
    """The capabilities of `needs` that none of `provides` is (or derives from: a capability may
    extend another)."""
    return [need for need in needs if not any(need in have.__mro__ for have in provides)]
