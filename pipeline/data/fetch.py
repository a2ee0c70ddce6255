"""One fetcher for every dataset: local mirrors first, then URLs; sha256-checked, atomic writes.

A file lands in data/<dataset>/ only after its checksum matched, under its final name by an
atomic rename, so a partial or corrupt file is never used and never left behind.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from pipeline import plugins
from pipeline.data.source import DatasetSource, RemoteFile
from pipeline.errors import PipelineError
from pipeline.fsutil import write_atomic
from pipeline.paths import data_dir

log = logging.getLogger(__name__)
CHUNK = 1 << 20


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _copy_from(mirror: Path, file: RemoteFile, tmp: Path) -> None:
    shutil.copyfile(mirror / file.name, tmp)


def _download(url: str, tmp: Path, timeout: float = 30.0) -> None:
    with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0)
        done, last_report = 0, time.monotonic()
        while block := response.read(CHUNK):
            out.write(block)
            done += len(block)
            if sys.stderr.isatty() and time.monotonic() - last_report > 0.5:
                share = f" ({100 * done / total:.0f}%)" if total else ""
                print(f"\r  {tmp.name}: {done >> 20} MiB{share}", end="", file=sys.stderr)
                last_report = time.monotonic()
        if total and done != total:
            raise OSError(f"truncated download: got {done} of {total} bytes")


def fetch_file(file: RemoteFile, dest_dir: Path, mirrors: list[Path], urls: list[str]) -> Path:
    """Put `file` into dest_dir, checked. Tries each mirror folder, then each base URL."""
    dest = dest_dir / file.name
    if dest.exists():
        if sha256_of(dest) == file.sha256:
            return dest
        log.warning("%s: checksum mismatch in the cache; fetching it again", dest)
        dest.unlink()
    dest_dir.mkdir(parents=True, exist_ok=True)
    sources = [(f"{m / file.name}", lambda tmp, m=m: _copy_from(m, file, tmp))
               for m in mirrors if (m / file.name).is_file()]
    sources += [(f"{u}/{file.name}", lambda tmp, u=u: _download(f"{u}/{file.name}", tmp)) for u in urls]
    failures = []
    for where, get in sources:

        def checked(tmp: Path, get=get) -> None:
            get(tmp)
            actual = sha256_of(tmp)
            if actual != file.sha256:
                raise OSError(f"sha256 {actual[:12]}... does not match the expected {file.sha256[:12]}...")

        try:
            write_atomic(dest, checked)
            log.info("%s <- %s", dest, where)
            return dest
        except (OSError, urllib.error.URLError, ValueError) as err:
            failures.append(f"  {where}: {err}")
    tried = "\n".join(failures) or "  (no mirror holds it and no URL is configured)"
    raise PipelineError(f"could not fetch {file.name}; tried:\n{tried}")


def mirrors_for(source: DatasetSource) -> list[Path]:
    folders = [os.environ[source.mirror_env]] if os.environ.get(source.mirror_env) else []
    return [Path(f) for f in (*folders, *source.mirror_dirs)]


def _valid(folder: Path, source: DatasetSource) -> bool:
    return all((folder / f.name).is_file() and sha256_of(folder / f.name) == f.sha256 for f in source.files)


def fetch_dataset(source: DatasetSource, force: bool = False, root: Path | None = None) -> Path:
    """All files of a dataset into <root or data/>/<name>/; returns that folder. A generated
    dataset is made in a scratch folder that then serves as the first mirror, so what the
    generator wrote is checked against the same checksums as a download."""
    dest_dir = (root or data_dir()) / source.name
    if force and dest_dir.exists():
        for file in source.files:
            (dest_dir / file.name).unlink(missing_ok=True)
    generate = source.load_generator()
    with tempfile.TemporaryDirectory(prefix=f".{source.name}.", dir=_scratch_parent(dest_dir)) as scratch:
        mirrors = mirrors_for(source)
        if generate is not None and not _valid(dest_dir, source):
            # A derived dataset: its parents are fetched (and checked) first, then read by the generator.
            parents = {name: fetch_dataset(plugins.datasets()[name], root=root) for name in source.derived_from}
            try:
                log.info("%s: generating%s", source.name, f" from {', '.join(parents)}" if parents else "")
                generate(Path(scratch), parents)
                mirrors.insert(0, Path(scratch))
            except (OSError, ValueError, PipelineError) as err:
                log.warning("%s: the generator failed (%s); trying the mirrors", source.name, err)
        try:
            for file in source.files:
                fetch_file(file, dest_dir, mirrors, list(source.base_urls))
        except PipelineError as err:
            fixes = [source.fix_hint] if source.fix_hint else []
            fixes.append(f"put the files in a folder and set {source.mirror_env} to it")
            raise PipelineError(f"{err}\nTo fix: {', or '.join(fixes)}.") from None
    return dest_dir


def _scratch_parent(dest_dir: Path) -> Path:
    dest_dir.parent.mkdir(parents=True, exist_ok=True)
    return dest_dir.parent


def require_dataset(source: DatasetSource, root: Path | None = None, folder: Path | None = None) -> Path:
    """The dataset's folder (default <root or data/>/<name>), every file present and matching its
    checksum; a clear error otherwise (a corrupt file is never used)."""
    written = folder is not None
    folder = folder or (root or data_dir()) / source.name
    fix = source.fix_hint if written else f"run `pipeline fetch {source.name}`"
    for file in source.files:
        path = folder / file.name
        if not path.is_file():
            raise PipelineError(f"{path} is missing: {fix} first")
        if sha256_of(path) != file.sha256:
            raise PipelineError(f"{path} is corrupt (its sha256 does not match): {fix}, which replaces it")
    return folder
