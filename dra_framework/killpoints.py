"""Fault injection for crash tests: make the daemon ``kill -9`` itself at the N-th crash-relevant
boundary of a claim operation.

The engine calls :func:`killpoint` at every point where a crash leaves a different persistent
state behind (docs/testing.md, "Kill points"): before and after each ``ctx.record`` commits,
after each backend hook of prepare/unprepare/rollback returns, after the PrepareStarted,
partition and PrepareCompleted checkpoint writes, and after an unprepare dropped its entry.
Nothing happens unless one of these environment variables is set in the daemon's environment:

``DRA_FRAMEWORK_KILL_AT=N``     SIGKILL this process when it reaches the N-th kill point (1-based).
``DRA_FRAMEWORK_KILL_LOG=FILE`` append ``<n>\\t<name>`` per kill point reached (before a kill,
                                so the file names where the process died).

A test runs the operation once with only ``DRA_FRAMEWORK_KILL_LOG`` to count the points, then
once per N with ``DRA_FRAMEWORK_KILL_AT=N`` (:func:`read_log` parses the file). Counting is per
process and only at these points, so it is deterministic for one claim operation at a time.
This module is imported by the engine: it must stay dependency-free and cheap.
"""
from __future__ import annotations

import os
import signal
import sys

KILL_AT = "DRA_FRAMEWORK_KILL_AT"
KILL_LOG = "DRA_FRAMEWORK_KILL_LOG"

_count = 0
#: (KILL_AT, KILL_LOG) as the process environment set them, read at the first kill point: the
#: engine passes about eight points per claim, and ``os.environ.get`` showed as 3 % of the
#: daemon's CPU under load (benchmarks/README.md).
_env: tuple[str | None, str | None] | None = None


def killpoint(name: str) -> None:
    """Count a kill point named ``name`` (one line, e.g. ``record example partition/acc-1``);
    log it and/or die here as the environment asks. A no-op without the variables. The
    variables are read once per process, at the first kill point."""
    global _env, _count
    if _env is None:
        _env = (os.environ.get(KILL_AT), os.environ.get(KILL_LOG))
    at, log = _env
    if not at and not log:
        return
    _count += 1
    if log:
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{_count}\t{' '.join(name.split())}\n".encode())
        finally:
            os.close(fd)
    if at and at.strip().isdigit() and int(at) == _count:
        sys.stderr.write(f"dra-framework: {KILL_AT}={at}: killing myself at {name}\n")
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)


def read_log(path: str | os.PathLike[str]) -> list[str]:
    """The kill point names of a ``DRA_FRAMEWORK_KILL_LOG`` file, in order (index 0 is point 1)."""
    try:
        with open(path, encoding="utf-8") as f:
            return [line.rstrip("\n").split("\t", 1)[1] for line in f if "\t" in line]
    except FileNotFoundError:
        return []
