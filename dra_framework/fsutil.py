"""Crash-safe file writes, lock files and directories with explicit modes, shared by the
checkpoint, the claim locks, the sockets and the CDI writer (docs/operations.md, "File modes").

Modes never depend on the process umask: directories are chmod-ed after creation, files get
``fchmod``, lock files are opened with ``O_NOFOLLOW`` so that a symlink planted in their place
cannot make the daemon create or open a file elsewhere.

Every atomic write goes to a temp file ``.<basename>.<pid>-<n>.tmp`` in the target's directory (a
name CDI runtimes skip), held under an exclusive ``flock`` by its writer until it is renamed over
the target. A temp file nobody holds locked is what an interrupted write left behind (the writer
was killed): :func:`remove_stale_temp_files` deletes those at start-up."""
from __future__ import annotations

import contextlib
import errno
import fcntl
import itertools
import json
import logging
import os
import re
import stat
import time
from pathlib import Path
from typing import Any


log = logging.getLogger(__name__)

#: Names :func:`atomic_write_file` gives its temp files: ``.<basename>.<random>.tmp``.
TEMP_NAME = re.compile(r"\..+\.tmp\Z")

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


def atomic_write_file(path: str, data: bytes, mode: int, *, follow_symlinks: bool = True) -> None:
    """Atomically replace ``path`` with ``data``: a temp file ``.<basename>.<pid>-<n>.tmp`` in the
    same directory (flock'ed while it exists, so :func:`remove_stale_temp_files` can tell a live
    write from a dead one), chmod ``mode``, fsync, ``os.replace``, fsync of the directory.

    The rename replaces a symbolic link at ``path`` rather than writing through it; with
    ``follow_symlinks=False`` a symbolic link there is refused instead (``OSError`` ``ELOOP``),
    like ``open(O_NOFOLLOW)``. Raises OSError (``ENOSPC`` included); on failure the temp file is
    removed and ``path`` is untouched, so a full disk never leaves an empty or partial file."""
    directory, base = os.path.split(path)
    directory = directory or "."
    if not follow_symlinks and os.path.islink(path):
        raise OSError(errno.ELOOP, "refusing to write through a symbolic link", path)
    fd, tmp = _create_temp(directory, base)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # released when the descriptor closes
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fchmod(fd, mode)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(directory)


_temp_counter = itertools.count()


def _create_temp(directory: str, base: str) -> tuple[int, str]:
    """A new temp file ``.<base>.<pid>-<n>.tmp`` in ``directory`` (mode 0600), opened for writing.
    Unique without random names: the pid and a per-process counter; ``O_EXCL`` skips a name a
    crashed process with the same pid left behind."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
    pid = os.getpid()
    for _ in range(100):
        tmp = os.path.join(directory, f".{base}.{pid}-{next(_temp_counter)}.tmp")
        try:
            return os.open(tmp, flags, 0o600), tmp
        except FileExistsError:
            continue
    raise OSError(errno.EEXIST, "no unused temp file name", os.path.join(directory, f".{base}.*.tmp"))


def write_state_file(path: str | os.PathLike[str], data: bytes | str, mode: int = 0o600) -> None:
    """Write a backend's state file (a partition marker, a small JSON document) crash-safely.

    - atomic (:func:`atomic_write_file`): readers and a restarted driver see the old content or
      the new one, never an empty or partial file, also on ``ENOSPC`` or a kill -9 mid-write;
      a leftover temp file of a killed write is removed at the driver's next start-up;
    - ``O_NOFOLLOW`` semantics: a symbolic link planted at ``path`` is refused with
      ``OSError(ELOOP)`` instead of being written through;
    - the parent directory is created (mode 0700) when missing.

    ``data``: bytes, or str (encoded UTF-8); ``mode``: permission bits of the file. Raises
    OSError naming ``path``."""
    p = os.fspath(path)
    make_dirs(os.path.dirname(os.path.abspath(p)), PRIVATE_DIR_MODE)
    atomic_write_file(p, data.encode() if isinstance(data, str) else bytes(data), mode, follow_symlinks=False)


def remove_stale_temp_files(directory: str | os.PathLike[str], *, recursive: bool = False,
                            prefix: str = ".") -> list[str]:
    """Delete temp files of interrupted :func:`atomic_write_file` calls in ``directory`` (and its
    sub-directories when ``recursive``; symbolic links are never followed): files named
    ``.<name>.tmp`` starting with ``prefix`` that no live writer holds locked. A file created in
    the last second and still empty is kept (its writer may be about to lock it). Safe while
    other processes write into the same directory. Returns the removed paths; never raises for
    a missing directory or a file that vanished meanwhile."""
    removed: list[str] = []
    root = os.fspath(directory)
    try:
        entries = list(os.scandir(root))
    except (FileNotFoundError, NotADirectoryError):
        return removed
    for e in entries:
        if e.is_dir(follow_symlinks=False):
            if recursive:
                removed += remove_stale_temp_files(e.path, recursive=True, prefix=prefix)
            continue
        if e.name.startswith(prefix) and TEMP_NAME.match(e.name) and _remove_if_abandoned(e.path):
            removed.append(e.path)
    if removed:
        with contextlib.suppress(OSError):
            fsync_dir(root)
    return removed


def _remove_if_abandoned(path: str) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return False  # gone, a link, or unreadable: leave it
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False  # a live writer holds it
        if st.st_size == 0 and time.time() - st.st_mtime < 1.0:
            return False
        cur = os.lstat(path)
        if (cur.st_dev, cur.st_ino) != (st.st_dev, st.st_ino):
            return False
        os.unlink(path)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def read_json_object(path: str | Path) -> dict[str, Any]:
    """A small JSON state file's object; ``{}`` when it is missing, unreadable or not an object."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_json_atomic(path: str | Path, data: Any, mode: int = 0o600) -> None:
    """Write a small JSON state file crash-safely (see :func:`write_state_file`), creating its
    dir (mode 0700) if missing."""
    write_state_file(path, json.dumps(data, sort_keys=True).encode(), mode)
