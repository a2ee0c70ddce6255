"""YAML -> validated ExperimentSpec. Every problem becomes one line: file:line:col: path: what."""

from __future__ import annotations

import difflib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

from pipeline.spec import experiment

if TYPE_CHECKING:
    from pipeline.spec.experiment import ExperimentSpec

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    where: str
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.path}: {self.message}" if self.path else f"{self.where}: {self.message}"


class SpecError(Exception):
    """A spec that cannot be used. str() gives one line per problem."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


# ---------------------------------------------------------------- YAML with positions

MAX_NODES = 100_000
"""A spec holds a few hundred values. YAML aliases let a short text stand for an exponentially
large one (each list repeating the one before: a 'billion laughs'); beyond this many values once
aliases are expanded, a spec is refused before anything expands it."""


def _expanded_size(root: yaml.Node, source: str) -> None:
    """Count the values the document holds with every alias expanded, without expanding: an
    alias is the very node object it refers to, so sizes are memoised per node. A node that
    contains itself (a recursive alias) is refused too."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def where(node: yaml.Node) -> str:
        return f"{source}:{node.start_mark.line + 1}:{node.start_mark.column + 1}"

    def children(node: yaml.Node) -> list[yaml.Node]:
        if isinstance(node, yaml.MappingNode):
            return [n for pair in node.value for n in pair]
        return list(node.value) if isinstance(node, yaml.SequenceNode) else []

    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:  # iterative post-order: a deeply nested spec cannot exhaust the Python stack
        node, finishing = stack.pop()
        if finishing:
            open_nodes.discard(id(node))
            sizes[id(node)] = 1 + sum(sizes[id(c)] for c in children(node))
            if sizes[id(node)] > MAX_NODES:
                raise SpecError([Problem(
                    where(node), "",
                    f"the spec expands to more than {MAX_NODES:,} values through YAML aliases (*name); "
                    "a spec holds a few hundred: write the repeated parts out, or use fewer aliases")])
            continue
        if id(node) in sizes:
            continue
        open_nodes.add(id(node))
        stack.append((node, True))
        for child in children(node):
            if id(child) in open_nodes:
                raise SpecError([Problem(where(child), "", "a YAML alias refers to a node that contains it "
                                                           "(a recursive structure); a spec cannot hold one")])
            if id(child) not in sizes:
                stack.append((child, False))


def _compose(text: str, source: str) -> yaml.Node | None:
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        raise SpecError([Problem(where, "", f"YAML syntax error: {err.problem}")]) from None
    except yaml.YAMLError as err:
        raise SpecError([Problem(source, "", f"YAML error: {err}")]) from None


def _positions(node: yaml.Node, source: str) -> tuple[dict[Loc, tuple[int, int]], list[Problem]]:
    """Map every key path to its (line, col), and report duplicate keys, which YAML allows
    silently but which are always a mistake in a spec."""
    positions: dict[Loc, tuple[int, int]] = {}
    problems: list[Problem] = []

    def walk(n: yaml.Node, loc: Loc) -> None:
        positions.setdefault(loc, (n.start_mark.line + 1, n.start_mark.column + 1))
        if isinstance(n, yaml.MappingNode):
            seen: set[str] = set()
            for key_node, value_node in n.value:
                key = key_node.value
                line, col = key_node.start_mark.line + 1, key_node.start_mark.column + 1
                if key in seen:
                    problems.append(
                        Problem(f"{source}:{line}:{col}", _dotted((*loc, key)), "duplicate key")
                    )
                seen.add(key)
                positions[(*loc, key)] = (line, col)
                walk(value_node, (*loc, key))
        elif isinstance(n, yaml.SequenceNode):
            for i, item in enumerate(n.value):
                walk(item, (*loc, i))

    walk(node, ())
    return positions, problems


def _dotted(loc: Loc) -> str:
    return ".".join(str(part) for part in loc)


# ---------------------------------------------------------------- overrides


def parse_override(text: str) -> tuple[Loc, Any]:
    """`a.b.0.c=value` -> (("a", "b", 0, "c"), value parsed as YAML)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise SpecError([Problem(f"--set {text}", "", "expected KEY=VALUE, e.g. train.max_epochs=5")])
    loc: Loc = tuple(int(p) if p.isdigit() else p for p in key.strip().split("."))
    if any(p == "" for p in loc):
        raise SpecError([Problem(f"--set {text}", "", f"empty part in the key {key!r}")])
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        raise SpecError([Problem(f"--set {text}", "", f"the value is not valid YAML: {err}")]) from None
    return loc, value


def _default(loc: Loc, data: dict) -> Any:
    """The default of the field at `loc`, as plain data ({} where there is none), so that an
    override can reach into a section the spec leaves at its default (e.g. downstream.1.k)."""
    if loc == ("downstream",):  # filled from the model's kind
        from pipeline.spec.experiment import downstream_defaults

        return downstream_defaults(data)
    model = _model_at(loc[:-1], data)
    field = model.model_fields.get(str(loc[-1])) if model is not None else None
    if field is None or field.is_required():
        return {}
    value = field.get_default(call_default_factory=True)
    return TypeAdapter(field.annotation).dump_python(value, mode="json") if value is not None else {}


def _apply(data: dict, loc: Loc, value: Any, text: str) -> None:
    node: Any = data
    for depth, part in enumerate(loc[:-1]):
        if isinstance(node, dict):
            if part not in node:
                node[part] = _default(loc[: depth + 1], data)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            raise SpecError(
                [Problem(f"--set {text}", _dotted(loc[: depth + 1]),
                         f"cannot set inside {_dotted(loc[:depth]) or 'the spec'}: it is not a section")]
            )
    last = loc[-1]
    if isinstance(node, dict):
        node[last] = value
    elif isinstance(node, list) and isinstance(last, int) and last < len(node):
        node[last] = value
    else:
        raise SpecError(
            [Problem(f"--set {text}", _dotted(loc), f"cannot set it: {_dotted(loc[:-1])} is not a section")]
        )


# ---------------------------------------------------------------- pydantic errors -> lines


def _strip_tags(loc: Loc, data: Any) -> Loc:
    """Pydantic puts the discriminator value into the location of a tagged-union member
    (model.swav.prototypes); the YAML has no such level."""
    out: list[str | int] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and part not in node and node.get("kind") == part:
            continue
        out.append(part)
        node = _child(node, part)
    return tuple(out)


def _unwrap(annotation: Any) -> Any:
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _model_at(loc: Loc, data: Any) -> type[BaseModel] | None:
    """The spec class whose fields live at the YAML path `loc`; a union member is chosen by the
    `kind` the data gives it."""
    current: Any = experiment.experiment_spec()
    node = data
    for part in (*loc, None):
        current = _unwrap(current)
        if typing.get_origin(current) in (typing.Union, types.UnionType):  # an optional section: its value's type
            present = [a for a in typing.get_args(current) if a is not type(None)]
            current = _unwrap(present[0]) if len(present) == 1 else current
        if typing.get_origin(current) in (typing.Union, types.UnionType):
            current = _member(current, node.get("kind") if isinstance(node, dict) else None)
        if part is None:
            break
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            current = field.annotation if field is not None else None
        elif typing.get_origin(current) is list and isinstance(part, int):
            current = typing.get_args(current)[0]
        else:
            return None
        node = _child(node, part)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _member(union: Any, kind: Any) -> Any:
    """The member of a tagged union whose `kind` literal is `kind`."""
    for member in map(_unwrap, typing.get_args(union)):
        field = getattr(member, "model_fields", {}).get("kind")
        if field is not None and kind in typing.get_args(field.annotation):
            return member
    return None


def _child(node: Any, part: str | int) -> Any:
    if isinstance(node, dict):
        return node.get(part)
    if isinstance(node, list) and isinstance(part, int) and part < len(node):
        return node[part]
    return None


def _kinds(loc: Loc) -> tuple[list[str], str]:
    """The members of the tagged union at `loc` (downstream tasks, models or continual strategies),
    and where to read about them."""
    from pipeline import plugins

    if loc and loc[0] == "downstream":
        return sorted(plugins.tasks()), "downstream task kinds"
    if "strategy" in loc:
        return sorted(plugins.strategies()), "strategies"
    return sorted(plugins.models()), "model kinds"


def _message(error: dict) -> str:
    kind = error["type"]
    ctx = error.get("ctx", {})
    got = error.get("input")
    if (kind == "missing" and error["loc"][-1] == "kind") or kind == "union_tag_not_found":
        kinds, what = _kinds(tuple(error["loc"]))
        return f"required, but missing; {what}: {', '.join(kinds)}"
    if kind == "missing":
        return "required, but missing"
    if kind == "extra_forbidden":
        return "unknown key"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        op = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}[kind]
        bound = next(iter(ctx.values()))
        return f"must be {op} {bound} (got {got!r})"
    if kind == "literal_error":
        return f"must be {ctx['expected']} (got {got!r})"
    if kind == "union_tag_invalid":
        kinds, what = _kinds(tuple(error["loc"]))
        close = difflib.get_close_matches(str(ctx["tag"]), kinds, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return f"unknown kind {ctx['tag']!r}; {hint}{what}: {', '.join(kinds)} (see `pipeline models`)"
    if kind == "value_error":
        return error["msg"].removeprefix("Value error, ")
    if kind in ("too_short", "too_long"):
        return f"{error['msg'].lower()} (got {got!r})"
    message = error["msg"][0].lower() + error["msg"][1:]
    if isinstance(got, (dict, list)):
        return f"{message} (got a {type(got).__name__})"
    return f"{message} (got {got!r})"


def _problems(err: ValidationError, data: Any, positions: dict[Loc, tuple[int, int]],
              source: str, overrides: list[tuple[Loc, str]]) -> list[Problem]:
    problems = []
    for error in err.errors():
        loc = tuple(error["loc"])
        if error["type"] in ("union_tag_not_found", "union_tag_invalid"):  # about the section's `kind`
            loc += ("kind",)
        yaml_loc = _strip_tags(loc, data)
        message = _message(error)
        if error["type"] == "extra_forbidden":
            model = _model_at(yaml_loc[:-1], data)
            if model is not None:
                close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1)
                message += f"; did you mean {close[0]!r}?" if close else (
                    f"; expected one of: {', '.join(model.model_fields)}"
                )
        override = next((text for oloc, text in overrides if yaml_loc[: len(oloc)] == oloc), None)
        if override is not None:
            where = f"--set {override}"
        else:
            probe = yaml_loc
            while probe not in positions and probe:
                probe = probe[:-1]
            line, col = positions.get(probe, (1, 1))
            where = f"{source}:{line}:{col}"
        problems.append(Problem(where, _dotted(yaml_loc), message))
    return problems


# ---------------------------------------------------------------- entry points


def load_text(text: str, source: str = "<spec>", overrides: list[str] | tuple[str, ...] = (),
              folder: Path | None = None, _chain: tuple[str, ...] = ()) -> ExperimentSpec:
    """Validate a spec's text. With `folder` (where its upstream specs live), the upstream specs
    are loaded too: an unknown one, a cycle, an invalid one or one whose encoder cannot take this
    spec's data is an error at the line that names it."""
    node = _compose(text, source)
    if node is None:
        raise SpecError([Problem(source, "", "the spec is empty; it needs at least `name` and `model.kind`")])
    _expanded_size(node, source)
    positions, problems = _positions(node, source)
    if problems:
        raise SpecError(problems)
    try:
        data = yaml.SafeLoader(text).get_single_data()
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        raise SpecError([Problem(where, "", f"YAML error: {err.problem}")]) from None
    if not isinstance(data, dict):
        raise SpecError([Problem(f"{source}:1:1", "", f"a spec is a mapping of sections, not a {type(data).__name__}")])
    applied: list[tuple[Loc, str]] = []
    for text_override in overrides:
        loc, value = parse_override(text_override)
        _apply(data, loc, value, text_override)
        applied.append((loc, text_override))
    try:
        spec = experiment.experiment_spec().model_validate(data)
    except ValidationError as err:
        raise SpecError(_problems(err, data, positions, source, applied)) from None
    if folder is not None and spec.upstream:
        problems = _upstream_problems(spec, Path(folder), positions, source, _chain)
        if problems:
            raise SpecError(problems)
    return spec


def _upstream_problems(spec: ExperimentSpec, folder: Path, positions: dict[Loc, tuple[int, int]], source: str,
                       chain: tuple[str, ...]) -> list[Problem]:
    from pipeline import plugins
    from pipeline.spec.experiment import is_registered_model

    registered = plugins.datasets()

    problems = []
    own = Path(source).stem
    for role, ref in spec.upstream.items():
        line, col = positions.get(("upstream", role), positions.get(("upstream",), (1, 1)))
        where, path = f"{source}:{line}:{col}", f"upstream.{role}"
        if is_registered_model(ref):
            continue  # resolved when a stage runs, from the MLflow registry
        if ref in (*chain, own):
            cycle = " -> ".join((*chain, own, ref))
            problems.append(Problem(where, path, f"a cycle of upstream specs ({cycle}): a spec cannot build on "
                                                 "itself; remove one of these upstream entries"))
            continue
        upstream_path = folder / f"{ref}.yaml"
        if not upstream_path.is_file():
            known = sorted(p.stem for p in folder.glob("*.yaml"))
            close = difflib.get_close_matches(ref, known, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            problems.append(Problem(where, path, f"unknown spec {ref!r}: there is no {upstream_path}; {hint}"
                                                 f"upstream names a spec of {folder}/ by its file name"))
            continue
        try:
            upstream = load(upstream_path, _chain=(*chain, own))
        except SpecError as err:
            first = err.problems[0]
            if "a cycle of upstream specs" in first.message:
                problems.append(Problem(where, path, first.message))
            else:
                problems.append(Problem(where, path, f"{ref!r} is not a valid spec ({first}); fix it first"))
            continue
        if role == "data":
            tasks, models = plugins.tasks(), plugins.models()
            writes = [tasks[t.kind].writes for t in upstream.downstream if tasks[t.kind].writes]
            if not writes:
                writers = ", ".join(kind for kind, entry in tasks.items() if entry.writes)
                problems.append(Problem(where, path, f"{ref!r} writes no dataset: none of its downstream tasks does "
                                                     f"({writers} do)"))
            elif spec.model is not None and writes[0] not in models[spec.model.kind].modalities:
                problems.append(Problem(where, path, f"{ref!r} writes {writes[0]} data, and model kind "
                                                     f"{spec.model.kind!r} takes "
                                                     f"{' or '.join(models[spec.model.kind].modalities)}"))
        elif role == "encoder" and upstream.model is None:
            problems.append(Problem(where, path, f"{ref!r} trains no model of its own (it uses "
                                                 f"{upstream.upstream.get('encoder')!r}'s encoder): name that spec"))
        elif role == "encoder" and "upstream" not in (spec.data.dataset, upstream.data.dataset):
            # (On another spec's written data, the shapes are checked when the data is read.)
            theirs, ours = registered[upstream.data.dataset], registered[spec.data.dataset]
            # What the encoder is fed: the data as it is, or what the model makes of it (a matcher
            # feeds it the scene images of image-text data, maybe resized).
            adapt = getattr(spec.model, "upstream_encoder_input", None)
            fed = adapt(ours.modality, ours.input_shape) if adapt else (ours.modality, ours.input_shape)
            if (theirs.modality, theirs.input_shape) != tuple(fed):
                problems.append(Problem(where, path, (
                    f"{ref}'s encoder takes {theirs.modality}s of shape {list(theirs.input_shape)} "
                    f"({theirs.name}), but it would be fed {fed[0]}s of shape {list(fed[1])} from data.dataset "
                    f"{ours.name!r}; use a dataset its encoder can take"
                    + (" (or set model.upstream_side)" if adapt else ""))))
    return problems


def load(path: str | Path, overrides: list[str] | tuple[str, ...] = (),
         _chain: tuple[str, ...] = ()) -> ExperimentSpec:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError([Problem(str(path), "", "no such file; specs live in specs/*.yaml")]) from None
    except (OSError, UnicodeDecodeError) as err:
        raise SpecError([Problem(str(path), "", f"cannot read the spec: {err}")]) from None
    return load_text(text, str(path), overrides, folder=path.parent, _chain=_chain)


def dump(spec: ExperimentSpec) -> str:
    """The resolved spec (defaults filled in) as YAML, to store beside what it produced."""
    return yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False)
