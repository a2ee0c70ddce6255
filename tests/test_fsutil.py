"""Atomic writes: a failure mid-write keeps the old file whole and leaves nothing behind."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
import torch

from pipeline.callbacks import AtomicCheckpointIO
from pipeline.fsutil import is_disk_full, write_atomic


def test_a_failed_write_keeps_the_old_file_and_names_the_target(tmp_path: Path):
    target = tmp_path / "last.ckpt"
    target.write_bytes(b"old and good")

    def half_then_full(tmp: Path):
        tmp.write_bytes(b"half of the new")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError) as caught:
        write_atomic(target, half_then_full)
    assert is_disk_full(caught.value)
    assert caught.value.filename == str(target)
    assert target.read_bytes() == b"old and good"
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_an_interrupt_mid_write_leaves_no_temporary_file(tmp_path: Path):
    def interrupted(tmp: Path):
        tmp.write_bytes(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomic(tmp_path / "encoder.pt", interrupted)
    assert list(tmp_path.iterdir()) == []


def test_checkpoints_are_written_beside_their_target_not_in_the_temp_folder(tmp_path: Path, monkeypatch):
    """A temporary file elsewhere would make the final move a copy over the old checkpoint."""
    elsewhere = tmp_path / "tmp"
    elsewhere.mkdir()
    monkeypatch.setenv("TMPDIR", str(elsewhere))
    monkeypatch.setattr("tempfile.tempdir", None)
    seen = []
    real_replace = __import__("os").replace

    def spy(src, dst):
        seen.append((Path(src).parent, Path(dst).parent))
        return real_replace(src, dst)

    monkeypatch.setattr("os.replace", spy)
    folder = tmp_path / "checkpoints"
    AtomicCheckpointIO().save_checkpoint({"w": torch.ones(3)}, folder / "last.ckpt")
    assert seen == [(folder, folder)]
    assert torch.equal(torch.load(folder / "last.ckpt")["w"], torch.ones(3))
    assert (folder / "last.ckpt").stat().st_mode & 0o777 != 0o600  # not mkstemp's private mode
