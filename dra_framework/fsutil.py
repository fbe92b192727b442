"""Crash-safe file writes shared by the checkpoint and the CDI writer."""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


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


def read_json_object(path: str | Path) -> dict[str, Any]:
    """A small JSON state file's object; ``{}`` when it is missing, unreadable or not an object."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_json_atomic(path: str | Path, data: Any, mode: int = 0o600) -> None:
    """Write a small JSON state file crash-safely (see :func:`atomic_write_file`), creating its dir."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_file(str(path), json.dumps(data, sort_keys=True).encode(), mode)
