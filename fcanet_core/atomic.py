"""Crash-safe file writes: a file is either the complete new version or the untouched old one."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable


def fsync_dir(path: str | Path) -> None:
    """Flush a folder's entries (e.g. a rename into it) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(target: str | Path, write: Callable[[BinaryIO], None], mode: int = 0o644) -> Path:
    """Write ``target`` through ``write(file)`` into a temporary file beside it, fsync, rename over it.

    Args:
        target: the file to create or replace; its folder is created when missing.
        write: fills the open binary file.
        mode: permission bits of the result (temporary files start at 0600).

    Returns:
        ``target`` as a :class:`~pathlib.Path`. On any error the temporary file is removed and
        ``target`` is left as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)
    return target
