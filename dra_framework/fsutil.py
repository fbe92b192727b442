"""Crash-safe file writes shared by the checkpoint and the CDI writer."""
from __future__ import annotations

import contextlib
import os
import tempfile


def fsync_dir(path: str) -> None:
    """fsync a directory, so a rename or unlink in it survives a power loss."""
    fd = os.open(path or ".", os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_file(path: str, data: bytes, mode: int) -> None:
    """Atomically replace ``path`` with ``data``: a temp file ``.<basename>.<random>.tmp`` in the
    same directory (a name CDI runtimes skip), chmod ``mode``, fsync, ``os.replace``, fsync of the
    directory. Raises OSError; on failure the temp file is removed and ``path`` is untouched."""
    directory, base = os.path.split(path)
    directory = directory or "."
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{base}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(directory)
