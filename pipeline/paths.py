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


def default_tracking_uri() -> str:
    return f"sqlite:///{project_root() / 'mlflow.db'}"


def default_artifact_root() -> Path:
    return project_root() / "mlartifacts"
