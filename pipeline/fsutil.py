"""Writing files so that a kill, a crash or a full disk never leaves half of one; reading them back
with one message saying what to do when one is missing or unreadable."""

from __future__ import annotations

import errno
import io
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

# What a full disk or an exhausted quota raise.
DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: Path, write: Callable[[Path], object]) -> Path:
    """`write(tmp)` into a temporary file beside `path`, flush it to the disk, then rename it over
    `path`: a reader, a killed run or a full disk leaves the old file or the new one, never half of
    one, and no temporary file behind. (The temporary file must be on the same filesystem: a
    rename across filesystems is a copy, which is not atomic.)"""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    tmp = Path(name)
    try:
        write(tmp)
        with open(tmp, "rb+") as written:
            os.fsync(written.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; give it the usual mode
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        if err.filename is None and err.errno is not None:  # a failed write() names no file: name ours
            raise OSError(err.errno, err.strerror, str(path)) from err
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def save_torch_atomic(obj, path: Path) -> Path:
    """torch.save, atomically (see write_atomic)."""
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return write_atomic(path, lambda tmp: tmp.write_bytes(buffer.getbuffer()))


def is_disk_full(err: BaseException) -> bool:
    return isinstance(err, OSError) and err.errno in DISK_FULL


def read_json(path: Path, hint: str) -> dict:
    from pipeline.errors import PipelineError

    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise PipelineError(f"{path} is missing: {hint}") from None
    except (OSError, json.JSONDecodeError) as err:
        raise PipelineError(f"{path} is unreadable ({err}): {hint}") from None
