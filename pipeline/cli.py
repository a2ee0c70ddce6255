"""The `pipeline` command. Thin: parse, load the spec, call a stage.

Nothing heavy (torch, lightning, mlflow) is imported at module level, so `--help` and
`validate` answer at once; each command imports what it needs.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="Configuration-driven experiment pipeline for brain-inspired learning.\n\n"
    "A spec (specs/*.yaml) declares a model and its chain: fetch -> pretrain -> evaluate -> report.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

SpecArg = Annotated[Path, typer.Argument(metavar="SPEC", help="An experiment spec, e.g. specs/quickstart.yaml.")]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", metavar="KEY=VALUE", help="Override a spec field: --set train.max_epochs=5 (repeatable)."),
]


def _version(show: bool) -> None:
    if show:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"pipeline {version('pipeline')}")
        except PackageNotFoundError:  # run from a checkout that was never installed
            typer.echo("pipeline (not installed: run `make setup`)")
        raise typer.Exit()


@app.callback()
def options(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Say more: debug messages too.")] = False,
    quiet: Annotated[bool, typer.Option(
        "--quiet", "-q", help="Say less: warnings and errors only, no progress bars.")] = False,
    show_version: Annotated[bool | None, typer.Option(
        "--version", callback=_version, is_eager=True, help="Print the version and exit.")] = None,
) -> None:
    """Options every command takes (before the command's name: `pipeline -q run SPEC`)."""
    if verbose and quiet:
        from pipeline.errors import PipelineError

        raise PipelineError("--verbose and --quiet ask for opposite things: give one")
    from pipeline.stages.common import set_verbosity, tune_collector

    tune_collector()  # every command that imports torch or MLflow starts and exits faster
    set_verbosity("debug" if verbose else "warning" if quiet else "info")


def _load(spec_path: Path, overrides: list[str] | None):
    from pipeline.spec.load import load

    return load(spec_path, overrides or [])


@app.command()
def validate(
    specs: Annotated[list[Path], typer.Argument(metavar="SPEC...", help="Spec files to check.")],
    set_: SetOpt = None,
) -> None:
    """Check specs without computing anything; every problem is one line file:line:col."""
    from pipeline.spec.experiment import spec_hash
    from pipeline.spec.load import SpecError, load

    failed = False
    for path in specs:
        try:
            spec = load(path, set_ or [])
        except SpecError as err:
            typer.echo(str(err), err=True)
            failed = True
            continue
        what = spec.model.kind if spec.model else f"on {spec.upstream['encoder']}'s encoder"
        typer.echo(f"ok  {path}  ({what}, hash {spec_hash(spec)})")
    if failed:
        raise typer.Exit(2)


@app.command()
def schema(
    output: Annotated[
        Path | None, typer.Option(metavar="FILE", help="Where to write it; default specs/schema.json.")
    ] = None,
    check: Annotated[bool, typer.Option(help="Exit 1 if the file on disk is stale.")] = False,
) -> None:
    """Write the JSON Schema of specs (editors use it for completion and checks)."""
    from pipeline.paths import project_root
    from pipeline.spec.schema import schema_text

    target = output or project_root() / "specs" / "schema.json"
    text = schema_text()
    if check:
        current = target.read_text() if target.exists() else ""
        if current != text:
            typer.echo(f"{target} is stale: run `pipeline schema`", err=True)
            raise typer.Exit(1)
        typer.echo(f"{target} is current")
        return
    target.write_text(text)
    typer.echo(f"wrote {target}")


@app.command()
def models() -> None:
    """List the registered model kinds, downstream tasks, continual strategies and datasets, and the
    plugins that register them."""
    from pipeline import plugins

    models, tasks, strategies, datasets = plugins.models(), plugins.tasks(), plugins.strategies(), plugins.datasets()
    width = max(len(name) for name in (*models, *tasks, *strategies, *datasets))

    def names(capabilities) -> str:
        return ", ".join(map(plugins.capability_name, capabilities))

    typer.echo("model kinds (model.kind):")
    for kind, entry in sorted(models.items()):
        typer.echo(f"{kind:<{width}}  [{', '.join(entry.modalities)}; provides {names(entry.provides)}] "
                   f"{entry.summary}")
    typer.echo("\ndownstream tasks (downstream[].kind):")
    for kind, entry in sorted(tasks.items()):
        typer.echo(f"{kind:<{width}}  [needs {names(entry.needs)}] {entry.summary}")
    if strategies:
        typer.echo("\ncontinual strategies (model.strategy.name):")
        for name, entry in sorted(strategies.items()):
            typer.echo(f"{name:<{width}}  {entry.summary}")
    typer.echo("\ndatasets (data.dataset):")
    for name, source in sorted(datasets.items()):
        typer.echo(f"{name:<{width}}  [{source.modality}] {source.description}")
    typer.echo("\nplugins (entry point group pipeline.plugins):")
    for name, plugin in sorted(plugins.plugins().items()):
        typer.echo(f"{name:<{width}}  {plugin.module}: {plugin.summary}")


@app.command()
def fetch(
    dataset: Annotated[str, typer.Argument(metavar="DATASET", help="A dataset name, e.g. fashion_mnist.")],
    force: Annotated[bool, typer.Option(help="Fetch again even if the files are cached.")] = False,
) -> None:
    """Fetch a dataset into data/<name>/ (local mirrors first, then its URLs; sha256-checked)."""
    from pipeline import plugins
    from pipeline.data.fetch import fetch_dataset
    from pipeline.errors import PipelineError

    registered = plugins.datasets()
    if dataset not in registered:
        raise PipelineError(f"unknown dataset {dataset!r}; known: {', '.join(registered)}")
    folder = fetch_dataset(registered[dataset], force=force)
    typer.echo(f"{dataset}: {folder}")


@app.command()
def pretrain(
    spec: SpecArg,
    set_: SetOpt = None,
    resume: Annotated[
        bool, typer.Option(help="Continue the unfinished run of this spec from its last checkpoint.")
    ] = False,
    auto_resume: Annotated[
        bool, typer.Option(help="Resume this configuration's unfinished run, keep its finished one when the "
                                "code and upstream are unchanged, else start afresh (the DVC stage's way).")
    ] = False,
) -> None:
    """Train the spec's model (its family's objective): writes artifacts/<name>/pretrain/ and one MLflow run."""
    from pipeline import stages

    stages.pretrain(_load(spec, set_), spec, resume=resume, auto_resume=auto_resume)


@app.command()
def evaluate(spec: SpecArg, set_: SetOpt = None) -> None:
    """The spec's downstream tasks with their baselines, on its trained model or upstream encoder."""
    from pipeline import stages

    stages.evaluate(_load(spec, set_), spec)


@app.command()
def run(
    spec: SpecArg,
    set_: SetOpt = None,
    seeds: Annotated[str | None, typer.Option(
        metavar="0,1,2", help="Run the spec once per seed, e.g. 0,1,2 (default: the spec's `seeds`, else its "
                              "`seed`), and report each figure's mean and spread; a seed already trained and "
                              "evaluated is kept.")] = None,
    jobs: Annotated[int, typer.Option(
        metavar="N", help="With several seeds: how many train at once, each in its own process; the cores are "
                          "divided among them, and the GPUs (one each, round-robin).")] = 1,
    auto_resume: Annotated[bool, typer.Option(
        help="Continue this configuration's unfinished training (a killed or requeued job), keep its finished "
             "one, else train afresh: what a batch job that may be requeued wants.")] = False,
) -> None:
    """Every stage of a spec in one process: fetch, pretrain, evaluate, report."""
    from pipeline import stages

    loaded = _load(spec, set_)
    if jobs != 1 and seeds is None and not loaded.seeds:
        from pipeline.errors import PipelineError

        raise PipelineError(f"--jobs runs seeds at once: give the seeds too, e.g. --seeds 0,1,2 --jobs {jobs}")
    if seeds is not None or loaded.seeds:
        from pipeline.stages.seeds import parse_seeds, run_seeds

        run_seeds(loaded, spec, parse_seeds(seeds) if seeds is not None else loaded.seeds, jobs)
        stages.report()  # reports/summary.md (reports/<name>.md is the DVC report stage's)
        return
    stages.fetch(loaded)
    if loaded.model is not None:  # a spec on an upstream encoder trains nothing of its own
        stages.pretrain(loaded, spec, auto_resume=auto_resume)
    # In a DDP process Lightning started, evaluate and report return at once: its share of the
    # training was all it had to do.
    stages.evaluate(loaded, spec)
    stages.report([loaded.name])


@app.command()
def report(
    specs: Annotated[
        list[Path] | None, typer.Argument(metavar="[SPEC]...", help="Specs to report; default: every one evaluated.")
    ] = None,
    set_: SetOpt = None,
    publish: Annotated[bool, typer.Option(
        help="Also write results/<name>.json of each spec given (the committed figures the docs quote: "
             "spread over seeds, validation, baselines, commit, runs, data hash, machine).")] = False,
) -> None:
    """Write reports/summary.md (and reports/<name>.md per spec given) and print the table."""
    from pipeline import stages
    from pipeline.errors import PipelineError
    from pipeline.spec.load import load
    from pipeline.stages.publish import publish as write_results

    loaded = [load(path, set_ or []) for path in specs or []]
    if set_ and not loaded:
        raise PipelineError("--set overrides fields of the specs given: name them, "
                            "e.g. `pipeline report specs/quickstart.yaml --set tracking.uri=...`")
    if publish and not loaded:
        raise PipelineError("--publish writes results/<name>.json of the specs given: name them, "
                            "e.g. `pipeline report --publish specs/quickstart.yaml`")
    stages.report([spec.name for spec in loaded] or None)
    if publish:
        from pipeline.tracking import tracking_uri

        for path in write_results([s.name for s in loaded], {s.name: s.description for s in loaded},
                                  tracking_uri(loaded[0])):
            typer.echo(f"wrote {path}")


@app.command()
def docs(
    check: Annotated[bool, typer.Option(help="Exit 1 if a page (or a figure it links) is stale; write nothing.")]
    = False,
) -> None:
    """Write docs/<plugin>.md of every plugin: its entry, its notes.md, its specs, its published results
    (results/*.json) and its own tables and figures."""
    from pipeline.paths import project_root
    from pipeline.stages.docs import write

    stale = write(check=check)
    root = project_root()
    if check:
        if stale:
            typer.echo("stale: " + ", ".join(str(path.relative_to(root)) for path in stale) + "; run `pipeline docs`",
                       err=True)
            raise typer.Exit(1)
        typer.echo("docs/ is current")
        return
    typer.echo("rewrote " + (", ".join(str(path.relative_to(root)) for path in stale) or "nothing: docs/ is current"))


@app.command()
def dvc(
    check: Annotated[bool, typer.Option(help="Exit 1 if dvc.yaml is not what the specs make.")] = False,
    specs: Annotated[Path | None, typer.Option(
        metavar="FOLDER", help="Folder of specs; default: the project's specs/.")] = None,
) -> None:
    """Write dvc.yaml from specs/*.yaml: every spec's stages, with the specs it builds on."""
    from pipeline.paths import project_root
    from pipeline.stages import dvc as generator

    root = project_root()
    target = root / "dvc.yaml"
    if check:
        if not generator.write(specs or root / "specs", target, check=True):
            typer.echo(f"{target} is stale: run `pipeline dvc`", err=True)
            raise typer.Exit(1)
        typer.echo(f"{target} is current")
        return
    generator.write(specs or root / "specs", target)
    typer.echo(f"wrote {target}")


@app.command()
def fingerprint(
    specs: Annotated[Path | None, typer.Option(
        metavar="FOLDER", help="Folder of specs; default: the project's specs/.")] = None,
) -> None:
    """Write fingerprints/*.txt: the hash of the code each DVC stage depends on, comments and
    docstrings left out (dvc.yaml's fingerprint stage runs this)."""
    from pipeline.paths import project_root
    from pipeline.stages import dvc as generator

    root = project_root()
    written = generator.write_fingerprints(root, specs)
    typer.echo(f"wrote {len(written)} fingerprints to {root / generator.FINGERPRINTS}")


@app.command()
def ui(
    port: Annotated[int, typer.Option(metavar="PORT", help="Port to serve on.")] = 5000,
    host: Annotated[str, typer.Option(
        metavar="ADDRESS", help="Interface to bind; a non-loopback one needs --expose.")] = "127.0.0.1",
    expose: Annotated[bool, typer.Option(
        "--expose", help="Allow binding an interface other networks reach (the UI has no login).")] = False,
) -> None:
    """Open the MLflow UI on the project's own store (from any working directory)."""
    import ipaddress

    from pipeline.errors import PipelineError

    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback and not expose:
        raise PipelineError(f"--host {host} would serve the runs, unauthenticated, beyond this machine; "
                            "add --expose if that is meant, or leave --host at 127.0.0.1")
    from pipeline.tracking import serve_ui

    serve_ui(host=host, port=port)


def main() -> None:
    from pipeline.errors import PipelineError
    from pipeline.spec.load import SpecError

    # Typer reports usage errors itself, and exits 130 on Ctrl-C (the interrupted stage has
    # already said so and marked its run KILLED); the project's own errors are one message.
    try:
        app()
    except SpecError as err:
        print(str(err), file=sys.stderr)
        sys.exit(2)
    except PipelineError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    except OSError as err:
        from pipeline.fsutil import is_disk_full

        if not is_disk_full(err):
            raise
        print(f"error: no space left on device writing {err.filename}: free space, then rerun; "
              "files written before are intact", file=sys.stderr)
        sys.exit(1)
