"""How long a stage's process takes before its real work begins: `pipeline pretrain SPEC` up to its
first training batch, `pipeline evaluate SPEC` up to its first feature extraction or task, each in a
fresh interpreter as DVC starts it, in a throwaway project (a copy of the spec, its data fetched).

    python bench/stage_start.py [--spec specs/quickstart.yaml] [--runs 5]

For each stage, one warm-up run (it creates the MLflow store and the bytecode caches), then `--runs`
timed ones, each reporting:
- start: wall time from spawning `python -c <harness> <stage> SPEC` to the first batch (pretrain) or
  the first feature set or task (evaluate); the harness only adds hooks that note the time there and
  end the process, then runs the CLI as `pipeline` does (it imports pipeline.stages.train and
  pipeline.plugins first, which import nothing heavy; Context's hook waits for the stage to import it);
- imports: the seconds the same start spends importing, from a second run under -X importtime (the
  cumulative times of its outermost imports; the tracing slows it a little, so that imports + rest
  is that run's start, a little over the untraced one);
- the rest (the traced start - its imports): reading the spec, plugins, data, code fingerprints,
  opening the MLflow store and its run, building the model and the Trainer, Lightning's set-up and
  its sanity check (validation batches before the first training batch, timed on their own);
- exit: from there to the end of the process, the stage ended by a SystemExit as by an error (its
  MLflow run marked, Lightning's teardown, the interpreter's shutdown): what a stage's end costs
  besides its work.
Medians over the runs; and the import self time summed by top-level package (shares hold on a
loaded machine too). Writes results/bench/stage_start.{json,txt} with the commit, the dirty flag,
the machine and the command.

Findings (issue 30; quickstart, 2-core AMD EPYC, otherwise idle; pipeline/ as it was before (the tree at 0041d46)
against the same with the collector's settings of `pipeline.stages.common.tune_collector`, run by run
in turn, median of 5):

| stage | start before | start after | exit before | exit after |
|---|---|---|---|---|
| pretrain | 6.03 s | 4.74 s | 1.86 s | 0.26 s |
| evaluate | 6.02 s | 5.01 s | 2.15 s | 0.28 s |

Before, the collector ran nine full collections over the objects the start imports, and several
more at exit; after, none during the start and none over them at exit. What is left is imports (all
but 0.1-0.3 s), pretrain's: pytorch_lightning 3.4 s in all, of which torch 1.2 s, torch._dynamo with
sympy 0.8 s (Lightning imports it itself, lightning_fabric/wrappers.py, but here torchvision comes
first), and torchmetrics, which Lightning imports to compare its version, with the optional packages
it imports because they are installed (scipy.signal 0.75 s, matplotlib 0.3 s, torchvision 0.15 s
of its own; Lightning-AI/torchmetrics#3457); MLflow 1.25 s (every `mlflow.*` import runs
mlflow/__init__, which imports its GenAI, gateway and data modules, pandas; then the SQLAlchemy store
and alembic for a sqlite URI). Our own modules import in about 0.15 s, plugin entries and spec classes
included."""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
HEAVY = {"torch", "pytorch_lightning", "lightning_fabric", "torchmetrics", "torchvision", "mlflow", "pandas", "scipy",
         "sklearn", "matplotlib", "lightly", "sympy", "pyarrow", "sqlalchemy", "alembic", "fastapi", "PIL"}

# Runs in the stage's process: note the time where the stage's work begins, with the modules
# imported by then, and end the process there: at once (os._exit), or with `STAGE_START_EXIT=exit` the
# way a stage ends on an error (SystemExit: the stage marks its MLflow run, the interpreter shuts down),
# whose end the parent times.
HARNESS = r"""
import importlib.util, json, os, sys, time
STARTED = time.time()
REPORT = os.environ["STAGE_START_REPORT"]
SANITY = []

def done(where):
    now = time.time()
    with open(REPORT, "w") as handle:
        json.dump({"where": where, "entered": STARTED, "at": now, "sanity": SANITY[:1], "modules": list(sys.modules)},
                  handle)
    if os.environ.get("STAGE_START_EXIT") == "exit":
        raise SystemExit(0)
    os._exit(0)

stage = sys.argv[1]
if stage == "pretrain":
    import pipeline.stages.train as train

    build = train.build_trainer

    def build_trainer(spec, **overrides):
        import pytorch_lightning as pl

        class FirstBatch(pl.Callback):
            def on_sanity_check_start(self, *args):
                SANITY.append(time.time())

            def on_train_batch_start(self, *args):
                done("first training batch")

        overrides["callbacks"] = [*overrides.get("callbacks", []), FirstBatch()]
        return build(spec, **overrides)

    train.build_trainer = build_trainer
else:
    import importlib.abc

    import pipeline.plugins as plugins

    plugins.TaskEntry.load = lambda self: done(f"first task ({self.module})")

    # Hooks Context.features once the stage imports it (importing it here would import torch
    # before the stage does).
    class PatchContext(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name != "pipeline.evaluators.context":
                return None
            sys.meta_path.remove(self)
            spec = importlib.util.find_spec(name)
            execute = spec.loader.exec_module

            def exec_module(module):
                execute(module)
                module.Context.features = lambda self, name: done(f"first feature set ({name})")

            spec.loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, PatchContext())

from pipeline.cli import main
sys.argv = ["pipeline", *sys.argv[1:]]
main()
raise SystemExit("the stage ended before its work began")
"""


def environment() -> dict[str, str]:
    env = {**os.environ, "MPLBACKEND": "Agg", "DVC_NO_ANALYTICS": "1"}
    for name in ("PIPELINE_ROOT", "MLFLOW_TRACKING_URI"):
        env.pop(name, None)
    return env


def project(spec: Path, folder: Path) -> Path:
    """A project holding only the spec, with its datasets fetched."""
    (folder / "specs").mkdir(parents=True)
    (folder / "dvc.yaml").write_text("stages: {}\n")
    shutil.copy(ROOT / "specs" / "schema.json", folder / "specs")
    shutil.copy(spec, folder / "specs")
    from pipeline.spec.load import load
    from pipeline.stages.fetch import datasets

    for name in datasets(load(spec)):
        subprocess.run([sys.executable, "-m", "pipeline", "fetch", name], cwd=folder, env=environment(), check=True,
                       stdout=subprocess.DEVNULL)
    return folder / "specs" / spec.name


def start(stage: str, spec: Path, options: list[str], folder: Path, importtime: bool = False) -> dict:
    """One stage process up to where its work begins: seconds from spawning it, its modules; then
    ended as on an error (its exit timed), or under -X importtime ended at once (its log kept)."""
    report = folder / "start.json"
    report.unlink(missing_ok=True)
    spawned = time.time()
    result = subprocess.run([sys.executable, *(["-X", "importtime"] if importtime else []), "-c", HARNESS, stage,
                             str(spec), *options], cwd=folder, capture_output=True, text=True,
                            env={**environment(), "STAGE_START_REPORT": str(report),
                                 "STAGE_START_EXIT": "abort" if importtime else "exit"})
    ended = time.time()
    if not report.is_file():
        raise SystemExit(f"{stage} failed before its work began:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    found = json.loads(report.read_text())
    return {"where": found["where"], "start_s": found["at"] - spawned, "interpreter_s": found["entered"] - spawned,
            "sanity_check_s": found["at"] - found["sanity"][0] if found["sanity"] else 0.0,
            "exit_s": ended - found["at"], "modules": found["modules"], "log": result.stderr if importtime else ""}


def parse(log: str) -> list[tuple[int, int, int, str]]:
    """-X importtime's lines as (self us, cumulative us, depth, module)."""
    out = []
    for line in log.splitlines():
        if line.startswith("import time:") and "self [us]" not in line:
            own, total, name = line.removeprefix("import time:").split("|")
            out.append((int(own), int(total), (len(name) - len(name.lstrip()) - 1) // 2, name.strip()))
    return out


def import_seconds(log: str) -> float:
    """The seconds the process spent importing: the cumulative times of its outermost imports."""
    return sum(total for _, total, depth, _ in parse(log) if depth == 0) / 1e6


def by_package(log: str) -> list[tuple[str, float]]:
    """-X importtime's self times summed by top-level package, in seconds, largest first."""
    total: collections.Counter[str] = collections.Counter()
    for own, _, _, name in parse(log):
        total[name.split(".")[0]] += own / 1e6
    return [(name, round(seconds, 3)) for name, seconds in total.most_common()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default="specs/quickstart.yaml")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--logs", help="a folder to keep each stage's -X importtime log in (<stage>.importtime)")
    parser.add_argument("--out", default=str(ROOT / "results" / "bench" / "stage_start.json"))
    args = parser.parse_args()
    # A short training, so that evaluate has a model to start on (the timed pretrain runs stop at their
    # first batch whatever the epochs).
    options = ["--set", "train.max_epochs=1", "--set", "train.limit_train_batches=2"]
    stages: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="stage_start_") as tmp:
        spec = project((ROOT / args.spec).resolve(), Path(tmp))
        for stage in ("pretrain", "evaluate"):
            if stage == "evaluate":
                subprocess.run([sys.executable, "-m", "pipeline", "pretrain", str(spec), *options], cwd=tmp,
                               env=environment(), check=True, capture_output=True)
            start(stage, spec, options, Path(tmp))  # warm-up: the MLflow store, bytecode caches
            runs, logs = [], []
            for index in range(args.runs):
                run = start(stage, spec, options, Path(tmp))
                # The same start again under -X importtime (which slows it a little): its import share.
                traced = start(stage, spec, options, Path(tmp), importtime=True)
                run["imports_s"] = import_seconds(traced["log"])
                run["rest_s"] = traced["start_s"] - run["imports_s"]
                run["traced_start_s"] = traced["start_s"]
                logs.append(traced["log"])
                runs.append(run)
                print(f"{stage} run {index}: start {run['start_s']:.2f} s, exit {run['exit_s']:.2f} s; imports "
                      f"{run['imports_s']:.2f} s in the traced start ({traced['start_s']:.2f} s, "
                      f"{len(run['modules'])} modules)", flush=True)
            median_log = sorted(logs, key=import_seconds)[len(logs) // 2]
            if args.logs:
                Path(args.logs).mkdir(parents=True, exist_ok=True)
                (Path(args.logs) / f"{stage}.importtime").write_text(median_log)
            modules = runs[-1]["modules"]
            heavy = sorted({name.split(".")[0] for name in modules} & HEAVY)
            stages[stage] = {
                "where": runs[-1]["where"],
                "start_s": statistics.median(r["start_s"] for r in runs),
                "imports_s": statistics.median(r["imports_s"] for r in runs),
                "rest_s": statistics.median(r["rest_s"] for r in runs),
                "interpreter_s": statistics.median(r["interpreter_s"] for r in runs),
                "sanity_check_s": statistics.median(r["sanity_check_s"] for r in runs),
                "exit_s": statistics.median(r["exit_s"] for r in runs),
                "runs": [{k: v for k, v in r.items() if k not in ("modules", "log")} for r in runs],
                "modules": len(modules),
                "heavy_packages": heavy,
                # From the traced run of median import time.
                "import_self_s_by_package": by_package(median_log)[:15],
            }
    from pipeline.provenance import git_state, machine

    commit, dirty = git_state(ROOT)
    command = " ".join(["python", "bench/stage_start.py", *sys.argv[1:]])
    lines = [f"Stage start: {args.spec}, median of {args.runs} runs each; commit {commit[:12]} (dirty: {dirty}); "
             f"{machine()['cpu']}, {machine()['cores']} cores; `{command}`", "",
             "| stage | where its work begins | start | imports | rest | of which sanity check | exit | heavy packages "
             "imported |", "|---|---|---|---|---|---|---|---|"]
    for stage, found in stages.items():
        lines.append(f"| {stage} | {found['where']} | {found['start_s']:.2f} s | {found['imports_s']:.2f} s | "
                     f"{found['rest_s']:.2f} s | {found['sanity_check_s']:.2f} s | {found['exit_s']:.2f} s | "
                     f"{', '.join(found['heavy_packages'])} |")
    for stage, found in stages.items():
        if found["import_self_s_by_package"]:
            lines += ["", f"{stage}: import self time by package: " + ", ".join(
                f"{name} {seconds:.2f} s" for name, seconds in found["import_self_s_by_package"])]
    text = "\n".join(lines)
    print("\n" + text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"spec": args.spec, "runs": args.runs, "stages": stages, "git_commit": commit,
                               "git_dirty": dirty, "machine": machine(), "command": command}, indent=2) + "\n")
    out.with_suffix(".txt").write_text(text + "\n")
    print(f"wrote {out} and {out.with_suffix('.txt')}")


if __name__ == "__main__":
    main()
