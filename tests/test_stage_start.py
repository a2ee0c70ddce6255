"""What a stage's process spends besides its work (bench/stage_start.py measures it): the garbage
collector's settings that spare a training or evaluating stage the scans of the million objects it
imports, during its start and at its exit; and the commands DVC starts once per spec or dataset
besides those two, which import none of torch, Lightning or MLflow."""

from __future__ import annotations

import gc
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.stages.common import COLLECTOR_THRESHOLDS, tune_collector
from tests.conftest import needs_fashion_mnist

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("numpy", "torch", "pytorch_lightning", "lightning_fabric", "torchmetrics", "torchvision", "mlflow",
         "matplotlib", "sklearn", "scipy", "lightly", "pandas", "PIL")


def python(code: str, *args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def test_a_stage_collects_less_and_skips_the_collections_of_its_exit(tmp_path: Path):
    # An atexit hook registered before the stage's runs after it (last in, first out): it sees the freeze.
    result = python(
        "import atexit, gc\n"
        "atexit.register(lambda: print('frozen at exit:', gc.get_freeze_count() > 0))\n"
        "from pipeline.stages.common import setup_logging\n"
        "setup_logging()\n"
        "setup_logging()\n"
        "print('thresholds:', gc.get_threshold())\n"
        "print('frozen before exit:', gc.get_freeze_count() > 0)\n", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"thresholds: {COLLECTOR_THRESHOLDS}", "frozen before exit: False",
                                          "frozen at exit: True"]


def test_thresholds_set_higher_and_a_collector_switched_off_are_kept():
    saved = gc.get_threshold()
    try:
        gc.set_threshold(5000, 20, 10)
        tune_collector()
        assert gc.get_threshold() == (5000, 20, COLLECTOR_THRESHOLDS[2])
        gc.set_threshold(0, 10, 10)
        tune_collector()
        assert gc.get_threshold() == (0, 10, 10)
    finally:
        gc.set_threshold(*saved)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "specs").mkdir()
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    for name in ("quickstart.yaml", "schema.json"):
        shutil.copy(ROOT / "specs" / name, tmp_path / "specs")
    return tmp_path


@pytest.mark.parametrize("command", [
    ["validate", "specs/quickstart.yaml"],
    ["models"],
    ["dvc"],
    ["fingerprint"],
    ["report"],
    pytest.param(["fetch", "fashion_mnist"], marks=needs_fashion_mnist),
], ids=lambda command: command[0])
def test_the_stages_dvc_starts_besides_training_and_evaluating_import_nothing_heavy(project: Path, command):
    """Each runs once per spec (report) or dataset (fetch) of a chain, or per `dvc repro`: a stray
    module-level import of torch, MLflow or matplotlib in the stage modules, the plugin entries or
    the spec classes would cost each one seconds."""
    result = python(
        "import atexit, sys\n"
        f"atexit.register(lambda: print('heavy:', sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
        "from pipeline.cli import main\n"
        "sys.argv = ['pipeline', *sys.argv[1:]]\n"
        "main()\n", *command, cwd=project, env={"PIPELINE_ROOT": str(project), "MLFLOW_TRACKING_URI": ""})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "heavy: []"


def test_the_bench_counts_the_outermost_imports_and_sums_self_times_by_package():
    spec = importlib.util.spec_from_file_location("stage_start_bench", ROOT / "bench" / "stage_start.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    log = ("import time: self [us] | cumulative | imported package\n"
           "import time:    100000 |     100000 |     b.y\n"
           "import time:    200000 |     300000 |   a.x\n"
           "import time:     50000 |     350000 | a\n"
           "import time:     10000 |      10000 | c\n"
           "something else on stderr\n")
    assert bench.import_seconds(log) == pytest.approx(0.36)
    assert bench.by_package(log) == [("a", 0.25), ("b", 0.1), ("c", 0.01)]
