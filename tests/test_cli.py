"""The `pipeline` command as a user runs it: exit codes and messages, no tracebacks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PIPELINE = [sys.executable, "-m", "pipeline"]


def cli(*args: str, cwd: Path = ROOT, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*PIPELINE, *args], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def test_help_is_fast_and_imports_nothing_heavy():
    started = time.perf_counter()
    result = cli("--help")
    assert result.returncode == 0
    assert "validate" in result.stdout
    assert "pretrain" in result.stdout
    probe = subprocess.run(
        [sys.executable, "-c",
         "import sys, pipeline.cli; "
         "print(sorted(m for m in ('torch', 'pytorch_lightning', 'mlflow') if m in sys.modules))"],
        capture_output=True, text=True, check=True)
    assert probe.stdout.strip() == "[]"
    assert time.perf_counter() - started < 10  # generous: a loaded CI machine; typically ~0.2 s


def test_validate_good_and_bad(tmp_path: Path):
    good = cli("validate", "specs/quickstart.yaml")
    assert good.returncode == 0
    assert good.stdout.startswith("ok  specs/quickstart.yaml")
    bad_spec = tmp_path / "bad.yaml"
    bad_spec.write_text("name: bad\nmodel:\n  kind: swav\n  prototypes: -3\n")
    bad = cli("validate", "specs/quickstart.yaml", str(bad_spec))
    assert bad.returncode == 2
    assert bad.stderr.strip() == f"{bad_spec}:4:3: model.prototypes: must be > 0 (got -3)"
    assert "Traceback" not in bad.stderr


def test_validate_with_overrides_and_a_missing_file():
    result = cli("validate", "specs/quickstart.yaml", "--set", "train.max_epochs=0")
    assert result.returncode == 2
    assert "--set train.max_epochs=0: train.max_epochs: must be > 0 (got 0)" in result.stderr
    missing = cli("validate", "specs/nope.yaml")
    assert missing.returncode == 2
    assert "no such file" in missing.stderr


def test_models_lists_registered_kinds():
    result = cli("models")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    for kind, takes in (("swav", "[image; provides Encoder]"), ("cpc_image", "[image; provides Encoder]"),
                        ("cpc_sequence", "[sequence; provides Encoder]")):
        assert any(line.startswith(f"{kind} ") and takes in line for line in lines), result.stdout
    assert any(line.startswith("network ") and "[needs Classifier]" in line for line in lines)
    assert any(line.startswith("replay ") for line in lines)  # a continual strategy
    assert any(line.startswith("continual ") and "pipeline.models.continual.plugin" in line for line in lines)
    assert any(line.startswith("mnist1d ") and "[sequence]" in line for line in lines)


def test_schema_check():
    assert cli("schema", "--check").returncode == 0


def test_stage_without_its_inputs_says_what_to_run(project: Path):
    spec = project / "specs" / "s.yaml"
    spec.write_text("name: s\nmodel: {kind: swav}\n")
    env = {"PIPELINE_ROOT": str(project)}
    pretrain = cli("pretrain", str(spec), env=env)
    assert pretrain.returncode == 1
    assert "run `pipeline fetch fashion_mnist` first" in pretrain.stderr
    evaluate = cli("evaluate", str(spec), env=env)
    assert evaluate.returncode == 1
    assert "s has not been trained" in evaluate.stderr
    assert "run `pipeline pretrain specs/s.yaml`" in evaluate.stderr
    (project / "data" / "fashion_mnist").mkdir(parents=True)
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                 "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (project / "data" / "fashion_mnist" / name).write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x01\x07")
    corrupt = cli("pretrain", str(spec), env=env)
    assert corrupt.returncode == 1
    assert "is corrupt" in corrupt.stderr
    assert "pipeline fetch fashion_mnist" in corrupt.stderr
    assert not list((project / "artifacts").glob("*/*/encoder.pt")) if (project / "artifacts").exists() else True
    assert "Traceback" not in pretrain.stderr + evaluate.stderr + corrupt.stderr


def test_unknown_dataset():
    result = cli("fetch", "imagenet")
    assert result.returncode == 1
    assert "known: fashion_mnist" in result.stderr


@pytest.mark.slow
def test_ui_serves_the_project_store_on_loopback(project: Path, tmp_path_factory):
    import socket
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    elsewhere = tmp_path_factory.mktemp("elsewhere")  # any working directory
    server = subprocess.Popen([*PIPELINE, "ui", "--port", str(port)], cwd=elsewhere,
                              env={**os.environ, "PIPELINE_ROOT": str(project)},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as page:
                    assert page.status == 200
                    break
            except OSError:
                assert server.poll() is None, server.stdout.read()
                assert time.monotonic() < deadline, "the UI did not answer within 120 s"
                time.sleep(1)
        assert (project / "mlflow.db").is_file()
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server and every worker it started
        server.wait(timeout=30)


def test_ui_refuses_a_non_loopback_interface_unless_exposed():
    result = cli("ui", "--host", "0.0.0.0")
    assert result.returncode == 1
    assert "--expose" in result.stderr


def test_version_completion_and_metavars_a_user_reads():
    from importlib.metadata import version

    assert cli("--version").stdout.strip() == f"pipeline {version('pipeline')}"
    top = cli("--help").stdout
    assert "--install-completion" in top
    assert "--quiet" in top
    run = cli("run", "--help").stdout
    assert "KEY=VALUE" in run
    assert "SPEC" in run
    assert "list[str]" not in run
    assert "KEY=VALUE" in cli("report", "--help").stdout


def test_quiet_and_verbose(project: Path):
    both = cli("-q", "-v", "models", env={"PIPELINE_ROOT": str(project)})
    assert both.returncode == 1
    assert "opposite" in both.stderr


def test_report_takes_overrides_of_the_specs_it_names(project: Path):
    no_spec = cli("report", "--set", "seed=3", env={"PIPELINE_ROOT": str(project)})
    assert no_spec.returncode == 1
    assert "name them" in no_spec.stderr
    bad = cli("report", "specs/quickstart.yaml", "--set", "train.max_epoch=3", env={"PIPELINE_ROOT": str(project)})
    assert bad.returncode == 2  # the override is checked like every other
    assert "max_epoch" in bad.stderr


@pytest.mark.parametrize(("flag", "level"), [("-q", "WARNING"), ("-v", "DEBUG"), (None, "INFO")])
def test_verbosity_reaches_the_stages_and_the_processes_they_start(flag, level):
    """The flag is set in the environment, which DDP ranks and seed workers inherit; each process's
    logging follows it (Lightning's too when quiet)."""
    probe = ("import logging, os; from pipeline.cli import app; from pipeline.stages.common import setup_logging; "
             f"app([{flag!r}, 'models'] if {flag!r} else ['models'], standalone_mode=False); "
             "print(os.environ.get('PIPELINE_LOG_LEVEL')); setup_logging(); "
             "print(logging.getLevelName(logging.getLogger('pipeline').getEffectiveLevel()), "
             "logging.getLevelName(logging.getLogger('pytorch_lightning').getEffectiveLevel()))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                         env={k: v for k, v in os.environ.items() if k != "PIPELINE_LOG_LEVEL"}).stdout.split("\n")
    assert out[-3] == {"WARNING": "warning", "DEBUG": "debug", "INFO": "info"}[level]
    pipeline_level, lightning_level = out[-2].split()
    assert pipeline_level == level
    if level == "WARNING":
        assert lightning_level == "WARNING"
