"""Where a figure comes from: the code's commit, the machine, the data's content hash. Written into
every stage's metrics file and into `results/<spec>.json`, so a number in the README traces to a
commit, a machine and an MLflow run."""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
from pathlib import Path


def git_state(root: Path) -> tuple[str, str]:
    """(commit, 'true'/'false' dirty) of the project, or ('unknown', 'unknown') outside git."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
        return commit, str(bool(dirty)).lower()
    except (OSError, subprocess.CalledProcessError):
        return "unknown", "unknown"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, object]:
    """What ran a stage: CPU model and cores (those this process may use), torch's threads, the
    GPU if one was visible, memory, OS and torch version."""
    import torch

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 0
    try:
        memory_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        memory_gib = None
    return {
        "cpu": _cpu_model(),
        "cores": cores,
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "memory_gib": memory_gib,
        "os": platform.platform(terse=True),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def content_hash(files: dict[str, str]) -> str:
    """One sha256 over a dataset's files, from each file's own sha256 (name -> digest): the same
    files give the same hash whatever order they are listed in."""
    text = "".join(f"{name}:{digest}\n" for name, digest in sorted(files.items()))
    return hashlib.sha256(text.encode()).hexdigest()
