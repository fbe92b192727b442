"""Serialising work on one claim across driver processes.

During a rolling update two driver pods serve the same node (the Go helper's ``RollingUpdate``
option; it then flocks ``serialize.lock`` around every call). Here the lock is per claim, so
independent claims still run concurrently: the claim UID picks one of :data:`STRIPES` lock files
``serialize-<nn>.lock`` in the driver's plugin directory (a fixed set, so no lock files pile up),
held with ``flock`` for the whole prepare or unprepare of that claim. Together with the in-process
per-claim lock and a checkpoint refresh after taking it, a claim is never prepared or rolled back
by one pod while the other is in the middle of it.

``flock`` is taken non-blocking and retried with a short sleep: a blocking flock would park a
worker thread per waiting claim and could starve the threads the lock holder needs to finish.
"""
from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import zlib
from typing import AsyncIterator

STRIPES = 64


@contextlib.asynccontextmanager
async def claim_flock(directory: str, uid: str, *, max_sleep: float = 0.05) -> AsyncIterator[None]:
    """Hold the cross-process lock of claim ``uid`` (files in ``directory``)."""
    path = os.path.join(directory, f"serialize-{zlib.crc32(uid.encode()) % STRIPES:02d}.lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        delay = 0.001
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_sleep)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock
