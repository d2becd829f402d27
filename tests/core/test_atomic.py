"""Crash-safe writes: the target is the complete new file, or the old one untouched."""
from __future__ import annotations

from pathlib import Path

import pytest

from fcanet_core.atomic import atomic_write


def test_writes_a_new_file_in_a_new_folder_with_the_mode(tmp_path: Path) -> None:
    target = atomic_write(tmp_path / "a" / "b.bin", lambda f: f.write(b"new"), mode=0o600)
    assert target.read_bytes() == b"new" and target.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in target.parent.iterdir()] == ["b.bin"]


def test_a_failing_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "model.pt"
    target.write_bytes(b"old")

    def half_written(f) -> None:
        f.write(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, half_written)
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["model.pt"]
