"""Crash-safe file writes, lock files and directories with explicit modes, shared by the
checkpoint, the claim locks, the sockets and the CDI writer (docs/operations.md, "File modes").

Modes never depend on the process umask: directories are chmod-ed after creation, files get
``fchmod``, lock files are opened with ``O_NOFOLLOW`` so that a symlink planted in their place
cannot make the daemon create or open a file elsewhere."""
from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import stat
import tempfile
from pathlib import Path
from typing import Any


log = logging.getLogger(__name__)

#: Modes of what the daemon creates (docs/operations.md, "File modes").
PRIVATE_DIR_MODE = 0o700  # state dirs: only the daemon
PLUGIN_DIR_MODE = 0o750  # <kubelet root>/plugins/<driver>: sockets, checkpoint, locks
LOCK_FILE_MODE = 0o600
SOCKET_MODE = 0o600  # the kubelet, which connects, runs as root


def make_dirs(path: str | os.PathLike[str], mode: int, *, own: bool = False) -> None:
    """``mkdir -p`` where every directory this call creates gets exactly ``mode`` (whatever the
    umask); existing directories are left as they are, except that ``own=True`` (a directory
    only this daemon uses) also sets ``mode`` on an existing ``path`` owned by this user.
    Raises OSError."""
    path = os.path.abspath(os.fspath(path))
    if own:
        with contextlib.suppress(FileNotFoundError):
            st = os.stat(path)
            if stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) != mode:
                os.chmod(path, mode)
    missing = []
    while not os.path.isdir(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    for d in reversed(missing):
        try:
            os.mkdir(d, mode)
        except FileExistsError:
            if not os.path.isdir(d):
                raise
            continue
        os.chmod(d, mode)


def open_lock_file(path: str) -> int:
    """Open (creating it with mode 0600) the lock file ``path`` for ``flock`` and return the
    descriptor. ``O_NOFOLLOW``: a symlink in its place is removed (the link, never its target)
    with a warning and a regular file created instead; anything else that is not a regular
    file raises OSError naming the path."""
    flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
    for _ in range(3):
        try:
            fd = os.open(path, flags, LOCK_FILE_MODE)
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            log.warning("lock file %s is a symlink (to %s): removing the link and using a regular file",
                        path, _readlink(path))
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            continue
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise OSError(errno.EINVAL, "lock file is not a regular file; remove it", path)
        if stat.S_IMODE(st.st_mode) != LOCK_FILE_MODE and st.st_uid == os.geteuid():
            os.fchmod(fd, LOCK_FILE_MODE)
        return fd
    raise OSError(errno.ELOOP, "lock file keeps being replaced by a symlink", path)


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return "?"


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
    """Write a small JSON state file crash-safely (see :func:`atomic_write_file`), creating its
    dir (mode 0700) if missing."""
    path = Path(path)
    make_dirs(path.parent, PRIVATE_DIR_MODE)
    atomic_write_file(str(path), json.dumps(data, sort_keys=True).encode(), mode)
