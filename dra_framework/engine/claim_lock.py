"""Serialising work on one claim: in arrival order within the process (:class:`ClaimQueue`),
and across driver processes (:func:`claim_flock`).

During a rolling update two driver pods serve the same node (the Go helper's ``RollingUpdate``
option; it then flocks ``serialize.lock`` around every call). Here the lock is per claim, so
independent claims still run concurrently: the claim UID picks one of :data:`STRIPES` lock files
``serialize-<nn>.lock`` in the driver's plugin directory (a fixed set, so no lock files pile up),
held with ``flock`` for the whole prepare or unprepare of that claim. Together with the in-process
per-claim queue and a checkpoint refresh after taking it, a claim is never prepared or rolled back
by one pod while the other is in the middle of it.

``flock`` is taken non-blocking and retried with a short sleep: a blocking flock would park a
worker thread per waiting claim and could starve the threads the lock holder needs to finish.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import fcntl
import os
import zlib
from typing import AsyncIterator

from ..fsutil import open_lock_file

STRIPES = 64


def stripe(uid: str) -> int:
    """The lock stripe of claim ``uid``: 0 to :data:`STRIPES` - 1 (claims on one stripe serialize)."""
    return zlib.crc32(uid.encode()) % STRIPES


@contextlib.asynccontextmanager
async def claim_flock(directory: str, uid: str, *, max_sleep: float = 0.05) -> AsyncIterator[None]:
    """Hold the cross-process lock of claim ``uid`` (files in ``directory``)."""
    path = os.path.join(directory, f"serialize-{stripe(uid):02d}.lock")
    fd = open_lock_file(path)
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


class Turn:
    """One operation's place in a claim's queue (see :class:`ClaimQueue`)."""

    __slots__ = ("_queue", "_uid", "_fut")

    def __init__(self, queue: "ClaimQueue", uid: str, fut: "asyncio.Future[None]") -> None:
        self._queue, self._uid, self._fut = queue, uid, fut

    async def wait(self) -> None:
        """Until every operation queued earlier on this claim has released its turn.
        Cancelling the wait gives the place up (call :meth:`release` all the same)."""
        await self._fut

    def release(self) -> None:
        """Leave the queue and let the next operation go; idempotent."""
        self._queue._release(self)


class ClaimQueue:
    """Per-claim FIFO of operations in the order their requests arrived.

    :meth:`enqueue` is synchronous, so an operation takes its place the moment the request is
    handled, before any await (an API fetch, a rate limiter, the cross-process lock): a later
    Unprepare can never overtake an earlier Prepare that is still fetching its claim, and the
    other way round. Empty queues are dropped, so nothing piles up over a node's lifetime."""

    def __init__(self) -> None:
        self._queues: dict[str, collections.deque[Turn]] = {}

    def enqueue(self, uid: str) -> Turn:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        q = self._queues.setdefault(uid, collections.deque())
        turn = Turn(self, uid, fut)
        q.append(turn)
        if len(q) == 1:
            fut.set_result(None)
        return turn

    def busy(self, uid: str) -> bool:
        """Whether an operation on ``uid`` is running or queued."""
        return uid in self._queues

    def claims(self) -> int:
        """How many claims have an operation running or queued."""
        return len(self._queues)

    def depth(self, uid: str) -> int:
        """How many operations on ``uid`` are running or queued."""
        return len(self._queues.get(uid, ()))

    def _release(self, turn: Turn) -> None:
        q = self._queues.get(turn._uid)
        if q is None or turn not in q:
            return
        was_head = q[0] is turn
        q.remove(turn)
        if not turn._fut.done():
            turn._fut.cancel()
        if not q:
            del self._queues[turn._uid]
        elif was_head and not q[0]._fut.done():
            q[0]._fut.set_result(None)
