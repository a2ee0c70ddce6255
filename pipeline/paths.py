"""Where the project's files live: everything is resolved from the project root, never the cwd."""

from __future__ import annotations

import os
from pathlib import Path

ROOT_ENV = "PIPELINE_ROOT"


def _is_project_root(path: Path) -> bool:
    return (path / "dvc.yaml").is_file() and (path / "specs").is_dir()


def project_root() -> Path:
    """The project root: $PIPELINE_ROOT, else the nearest parent of the cwd that holds dvc.yaml
    and specs/, else the checkout this package was installed from."""
    if env := os.environ.get(ROOT_ENV):
        return Path(env).resolve()
    cwd = Path.cwd().resolve()
    for candidate in (cwd, *cwd.parents):
        if _is_project_root(candidate):
            return candidate
    return Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    return project_root() / "data"


def artifacts_dir(spec_name: str) -> Path:
    return project_root() / "artifacts" / spec_name


def metrics_dir(spec_name: str) -> Path:
    return project_root() / "metrics" / spec_name


def reports_dir() -> Path:
    return project_root() / "reports"


def store_root() -> Path:
    """The folder of the default MLflow store (mlflow.db, mlartifacts/): the project root, except
    in the copy of the project where DVC runs a queued or `--temp` experiment
    (`<repo>/.dvc/tmp/exps/<tmp>/`, a git checkout without the git-ignored store, deleted once the
    experiment is collected): its runs belong in the project's own store, in the repository DVC
    names in $DVC_ROOT. (Its outputs stay in the copy, which is what DVC collects.)"""
    root = project_root()
    original = os.environ.get("DVC_ROOT")
    if not original:
        return root
    original_root = Path(original).resolve()
    exps = original_root / ".dvc" / "tmp" / "exps"
    if root == exps or not root.is_relative_to(exps):
        return root
    for candidate in (root, *root.parents):  # the copy's DVC root: the project's place in it
        if candidate == exps:
            break
        if (candidate / ".dvc").is_dir():
            return original_root / root.relative_to(candidate)
    return root


def default_tracking_uri() -> str:
    return f"sqlite:///{store_root() / 'mlflow.db'}"


def default_artifact_root() -> Path:
    return store_root() / "mlartifacts"
