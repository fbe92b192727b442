"""The crash-safe per-driver checkpoint: ``<kubelet_root>/plugins/<driver>/checkpoint.json``.

File format (schema version :data:`SCHEMA_VERSION`)::

    {"checksum":"sha256:<hex>","format":"dra-framework-checkpoint","length":N,"version":1}\\n
    <payload: N bytes of canonical JSON>

Line 1 is a header; the checksum and length cover the payload *bytes exactly as stored*, never a
re-serialisation of parsed data, so a field added by a newer release can never make an old file
"corrupt" (the NVIDIA driver's bug #1080). The payload is ``{"bootId": ..., "claims": {uid:
entry}}``; each entry is read into a typed :class:`~dra_framework.engine.entry.ClaimEntry` (its
shape, and the upgrade of older schema versions, live in :mod:`dra_framework.engine.entry`), and
unknown keys in them survive rewrites.

Writes are atomic: temp file in the same directory, fsync, ``os.replace``, fsync of the directory.
Every read-modify-write holds an ``fcntl.flock`` on ``checkpoint.lock`` next to the file (two
driver pods overlap during an upgrade). A commit runs on the event loop while commits are short
(tmpfs; on a disk too while one claim is in flight) and in a worker thread otherwise
(:mod:`dra_framework.blocking_io`); on the loop it never waits for the lock: a commit that would
wait for another process runs in a thread. Concurrent :meth:`Checkpoint.update` calls are
group-committed: one lock + one write for everything pending.

A corrupt, truncated, empty or newer-version file never makes the driver crash-loop: on
:meth:`Checkpoint.load` it is moved aside to ``checkpoint.json.corrupt-<UTC timestamp>``,
reported through ``on_problem`` and the driver starts with an empty state. (When a *running*
instance finds a newer-version file written by another, newer instance, it does not move it aside:
its update fails with :class:`CheckpointError` instead, so the newer pod's state stays intact.)
"""
from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import inspect
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from typing import Any, Callable, Iterator, Mapping

from ..blocking_io import BlockingIO, WouldBlock, running_inline
from ..fsutil import PLUGIN_DIR_MODE, atomic_write_file, fsync_dir, make_dirs, open_lock_file
from .codec import CheckpointFormatError, decode, encode
from .entry import PREPARE_COMPLETED, PREPARE_STARTED, SCHEMA_VERSION, ClaimEntry

log = logging.getLogger(__name__)

FILE_NAME = "checkpoint.json"
LOCK_NAME = "checkpoint.lock"
BOOT_ID_PATH = "proc/sys/kernel/random/boot_id"

Claims = dict[str, ClaimEntry]


class CheckpointError(Exception):
    """The checkpoint cannot be written (I/O error, or a newer instance owns the file)."""


@dataclass(frozen=True)
class CheckpointProblem:
    """What ``on_problem`` receives: the checkpoint ``path``, a machine ``reason`` (see
    :class:`CheckpointFormatError`, plus ``unreadable`` for I/O errors and ``missing`` when the
    file is gone while claim CDI specs of the driver exist), a one-line ``message``
    for logs and events, and where the bad file was moved (``None`` when it was left in place)."""

    path: str
    reason: str
    message: str
    moved_to: str | None = None


def read_boot_id(host_root: str | os.PathLike[str] = "/") -> str:
    """The kernel's boot id (``<host_root>/proc/sys/kernel/random/boot_id``); ``""`` when
    unreadable (then entries are never considered to be from another boot)."""
    try:
        return (Path(host_root) / BOOT_ID_PATH).read_text().strip()
    except OSError as exc:
        log.warning("cannot read the boot id from %s: %s; reboot detection is off",
                    Path(host_root) / BOOT_ID_PATH, exc)
        return ""


def checkpoint_path(kubelet_root: str | os.PathLike[str], driver: str) -> Path:
    """``<kubelet_root>/plugins/<driver>/checkpoint.json``."""
    return Path(kubelet_root) / "plugins" / driver / FILE_NAME


# --- file helpers ------------------------------------------------------------------------------


def _stat_key(path: str) -> tuple[int, int, int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


@contextlib.contextmanager
def _flock(lock_path: str) -> Iterator[None]:
    fd = open_lock_file(lock_path)
    try:
        if running_inline():  # on the event loop: never wait for another process
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise WouldBlock(lock_path) from None
        else:
            fcntl.flock(fd, fcntl.LOCK_EX)  # blocking, in a worker thread
        yield
    finally:
        os.close(fd)  # closing releases the lock (also when the process dies)


# --- the checkpoint ----------------------------------------------------------------------------


class Checkpoint:
    """One driver's checkpoint file.

    - ``path``: the file (see :func:`checkpoint_path`); its directory is created if missing.
    - ``boot_id``: the current boot id; default: :func:`read_boot_id` under ``host_root``.
    - ``on_problem``: called (in the event loop) with a :class:`CheckpointProblem` whenever a bad
      file is found; may return an awaitable (run as a task). The lead wires it to a log line,
      the readiness probe and a Kubernetes Event on the Node.

    ``claims`` is the last state read or written: a mapping uid → entry that callers must treat
    as read-only (updates replace entries, they never mutate them in place).
    """

    def __init__(self, path: str | os.PathLike[str], *, boot_id: str | None = None,
                 host_root: str | os.PathLike[str] = "/",
                 on_problem: Callable[[CheckpointProblem], Any] | None = None) -> None:
        self.path = os.fspath(path)
        self.directory = os.path.dirname(self.path) or "."
        self.lock_path = os.path.join(self.directory, LOCK_NAME)
        self.boot_id = read_boot_id(host_root) if boot_id is None else boot_id
        self.on_problem = on_problem
        self.claims: Mapping[str, ClaimEntry] = {}
        self.file_boot_id = ""
        self.problems: list[CheckpointProblem] = []
        #: False when :meth:`load` found no file (a fresh node, or the file was deleted).
        self.existed_at_load = True
        self._stat: tuple[int, int, int, int] | None = None
        self._pending: list[tuple[Callable[[Claims], Any], asyncio.Future[Any]]] = []
        self._committer: asyncio.Task[None] | None = None
        self._dir_ok = False
        self._encoded: dict[str, tuple[Any, bytes]] = {}  # see encode()
        self._bg: set[asyncio.Task[Any]] = set()
        #: commits run inline while they are fast (tmpfs), in a thread while fsync is slow
        self._io = BlockingIO("checkpoint")

    def inline_while_alone(self, alone: Callable[[], bool]) -> None:
        """Commit on the event loop even when fsync makes a commit take up to
        :data:`~dra_framework.blocking_io.ALONE_THRESHOLD` while ``alone()`` (no other claim
        operation in flight): one claim at a time saves the thread hand-off, many still overlap
        their commits with the other claims' work in a thread."""
        self._io.alone = alone

    # --- reading ---------------------------------------------------------------------------

    def get(self, uid: str) -> ClaimEntry | None:
        return self.claims.get(uid)

    async def load(self) -> Mapping[str, ClaimEntry]:
        """Read the file under the lock (start-up). A bad file is moved aside and reported, and
        the state starts empty; a missing file is an empty state. Never raises for file
        content; raises OSError only when the directory cannot be created."""
        make_dirs(self.directory, PLUGIN_DIR_MODE, own=True)
        problems: list[CheckpointProblem] = []

        def work() -> None:
            with _flock(self.lock_path):
                self.existed_at_load = os.path.lexists(self.path)
                self._read_locked(problems, quarantine_newer=True)
        await asyncio.to_thread(work)
        self._report(problems)
        return self.claims

    def report_problem(self, reason: str, message: str) -> None:
        """Report a problem found by the caller (``reason`` ``missing``: the file is gone while
        state it described is still on the node) like a bad file: log, ``problems``, ``on_problem``."""
        self._report([CheckpointProblem(self.path, reason, message, None)])

    async def refresh(self) -> Mapping[str, ClaimEntry]:
        """Re-read the file if another process changed it (cheap stat check)."""
        if _stat_key(self.path) != self._stat:
            problems: list[CheckpointProblem] = []

            def work() -> None:
                with _flock(self.lock_path):
                    self._read_locked(problems, quarantine_newer=False)
            try:
                await asyncio.to_thread(work)
            except CheckpointError as exc:
                log.warning("%s", exc)
            self._report(problems)
        return self.claims

    def _read_locked(self, problems: list[CheckpointProblem], *, quarantine_newer: bool) -> Claims:
        """Bring ``self.claims`` up to date with the file; caller holds the flock. Returns a
        fresh top-level copy to mutate."""
        key = _stat_key(self.path)
        if key is None or key == self._stat:
            return dict(self.claims)
        try:
            with open(self.path, "rb") as f:
                raw = f.read()
            stored, file_boot = decode(raw)
        except FileNotFoundError:
            return dict(self.claims)
        except (OSError, CheckpointFormatError) as exc:
            reason = getattr(exc, "reason", "unreadable")
            if reason == "newer-version" and not quarantine_newer:
                problems.append(CheckpointProblem(self.path, reason, f"{self.path}: {exc}; another, newer "
                                                  "driver instance owns it; not writing", None))
                raise CheckpointError(f"checkpoint {self.path}: {exc}; written by a newer driver instance, "
                                      "which now owns it") from None
            moved = self._quarantine()
            msg = f"checkpoint {self.path} is unusable ({reason}: {exc}); " + (
                f"moved aside to {moved}" if moved else "could not move it aside") + \
                (", starting with an empty state" if quarantine_newer else ", continuing with the in-memory state")
            problems.append(CheckpointProblem(self.path, reason, msg, moved))
            self._stat = None
            return dict(self.claims)
        claims = {uid: ClaimEntry.from_json(uid, e) for uid, e in stored.items()}
        self.claims, self.file_boot_id, self._stat = claims, file_boot, key
        return dict(claims)

    def _quarantine(self) -> str | None:
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + f".{time.time_ns() % 1_000_000_000:09d}Z"
        target = f"{self.path}.corrupt-{stamp}"
        try:
            os.replace(self.path, target)
            fsync_dir(self.directory)
            return target
        except OSError as exc:
            log.error("cannot move the bad checkpoint %s aside: %s", self.path, exc)
            return None

    def _report(self, problems: list[CheckpointProblem]) -> None:
        for p in problems:
            self.problems.append(p)
            log.error("%s", p.message)
            if self.on_problem is None:
                continue
            try:
                res = self.on_problem(p)
                if inspect.isawaitable(res):
                    task = asyncio.ensure_future(res)
                    self._bg.add(task)
                    task.add_done_callback(self._bg.discard)
            except Exception:  # a reporting failure must not break the driver
                log.exception("checkpoint problem callback failed")

    # --- writing ---------------------------------------------------------------------------

    async def update(self, fn: Callable[[Claims], Any]) -> Any:
        """Run ``fn(claims)`` on the current state under the file lock and persist the result
        atomically; returns what ``fn`` returned. ``fn`` gets a fresh top-level dict uid →
        :class:`ClaimEntry` to modify (assign or delete entries; a JSON object assigned is read as
        an entry) and runs where the commit runs (the event loop or a worker thread; see the
        module docstring), so it must not block. If ``fn`` raises, its changes are discarded and
        the exception propagates to this caller only. Concurrent calls are committed together (one
        lock, one fsync)."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((fn, fut))
        if self._committer is None:
            self._committer = asyncio.ensure_future(self._commit_loop())
        return await fut

    async def _commit_loop(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                problems: list[CheckpointProblem] = []
                try:
                    results = await self._io.run(self._commit_sync, batch, problems)
                except BaseException as exc:
                    err = exc if isinstance(exc, CheckpointError) else CheckpointError(
                        f"checkpoint {self.path}: write failed: {exc!r}")
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(err)
                    self._report(problems)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                self._report(problems)
                for (_, fut), (ok, value) in zip(batch, results, strict=True):
                    if fut.done():
                        continue
                    if ok:
                        fut.set_result(value)
                    else:
                        fut.set_exception(value)
        finally:
            self._committer = None

    def _commit_sync(self, batch: list[tuple[Callable[[Claims], Any], asyncio.Future[Any]]],
                     problems: list[CheckpointProblem]) -> list[tuple[bool, Any]]:
        if not self._dir_ok:  # once, not per commit; a directory removed later fails the write
            make_dirs(self.directory, PLUGIN_DIR_MODE)
            self._dir_ok = True
        with _flock(self.lock_path):
            working = self._read_locked(problems, quarantine_newer=False)
            results: list[tuple[bool, Any]] = []
            changed = False
            for fn, _ in batch:
                attempt = dict(working)
                try:
                    value = fn(attempt)
                except Exception as exc:
                    results.append((False, exc))
                    continue
                working = {uid: e if isinstance(e, ClaimEntry) else ClaimEntry.from_json(uid, e)
                           for uid, e in attempt.items()}
                changed = True
                results.append((True, value))
            if changed:
                data = encode(working, self.boot_id, self._encoded)
                try:
                    try:
                        atomic_write_file(self.path, data, 0o600)
                    except FileNotFoundError:  # someone removed the directory: make it again
                        make_dirs(self.directory, PLUGIN_DIR_MODE)
                        atomic_write_file(self.path, data, 0o600)
                except OSError as exc:
                    if exc.errno == errno.ENOSPC:
                        raise CheckpointError(f"checkpoint {self.path}: no space left on device") from None
                    raise CheckpointError(f"checkpoint {self.path}: write failed: {exc}") from None
                self.claims, self.file_boot_id, self._stat = working, self.boot_id, _stat_key(self.path)
            return results


__all__ = [
    "BOOT_ID_PATH", "Checkpoint", "CheckpointError", "CheckpointFormatError", "CheckpointProblem",
    "FILE_NAME", "PREPARE_COMPLETED", "PREPARE_STARTED", "SCHEMA_VERSION", "checkpoint_path",
    "decode", "encode", "read_boot_id",
]
