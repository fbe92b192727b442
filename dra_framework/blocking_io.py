"""Blocking file work (fsync'd writes, renames, unlinks) run where it costs least: inline on the
event loop while it is short, in a worker thread while it is slow.

A hand-off to a worker thread and back costs about 0.1 ms of CPU (two wake-ups, the GIL changing
hands) and, on a busy node, a wait for a free core each way (0.2–0.4 ms of latency here). A
checkpoint or CDI write to tmpfs takes about a tenth of that, so there the hand-off is the cost;
a write to a disk whose fsync takes a millisecond or more must not stall the loop, so there the
thread is the right place (concurrent claims then share one commit and overlap their other work).
Each :class:`BlockingIO` keeps the durations of its last runs and decides per call on their
median, so a run slowed by the machine does not move the work to threads, where under load the
GIL slows every later run too and the work would stay (benchmarks/README.md, "What was
optimised").
"""
from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from typing import Any, Callable, TypeVar

T = TypeVar("T")

#: Work whose typical run (the median of the last :data:`RUNS_KEPT`) took less than this many
#: seconds runs inline.
INLINE_THRESHOLD = 0.0005
#: Runs whose durations decide.
RUNS_KEPT = 8
#: Work typically shorter than this also runs inline while its owner has nothing else in flight
#: (see :attr:`BlockingIO.alone`): the loop has no other work to overlap with the wait, so a stall
#: this long delays nobody and saves the hand-off (an fsync'd checkpoint commit on a disk).
ALONE_THRESHOLD = 0.002
#: An inline run longer than this (seconds) sends the next runs to a thread at once, whatever the
#: median says: a disk whose fsync stalls must not stall the loop run after run. Well above what
#: the scheduler preempting the loop costs, which the median is there to ignore.
STALL_LIMIT = 10 * ALONE_THRESHOLD

_state = threading.local()


class WouldBlock(Exception):
    """Raised by work running inline that would have to wait (a lock another process holds);
    :meth:`BlockingIO.run` then runs it again in a worker thread. The work must not have changed
    anything before raising it."""


def running_inline() -> bool:
    """Whether the caller runs inline on the event loop (so it must not wait for a lock:
    raise :class:`WouldBlock` instead)."""
    return getattr(_state, "inline", False)


class BlockingIO:
    """Runs blocking callables for one kind of work (``name``, for repr and debugging).

    The first call runs in a thread (nothing is known yet); later calls run inline while the
    median duration of the last :data:`RUNS_KEPT` runs is below ``threshold`` seconds (or below
    :data:`ALONE_THRESHOLD` while :attr:`alone` says so) and no other call of this instance is in
    flight in a thread. Exceptions of the callable propagate unchanged.
    """

    def __init__(self, name: str, threshold: float = INLINE_THRESHOLD) -> None:
        self.name = name
        self.threshold = threshold
        self.typical: float | None = None  # seconds: the median of the runs kept
        self._runs: deque[float] = deque(maxlen=RUNS_KEPT)
        self._in_threads = 0
        #: Set by the owner: True while no other work of it is in flight (None: never alone).
        self.alone: Callable[[], bool] | None = None

    def __repr__(self) -> str:
        typical = "unknown" if self.typical is None else f"{self.typical * 1000:.3f} ms"
        return f"BlockingIO({self.name!r}, typically {typical})"

    @property
    def inline(self) -> bool:
        """Whether the next call would run inline."""
        if self._in_threads or self.typical is None:
            return False
        return self.typical < self.threshold or (
            self.typical < ALONE_THRESHOLD and self.alone is not None and self.alone())

    def _observe(self, seconds: float, inline: bool = False) -> None:
        if inline and seconds > STALL_LIMIT:
            self._runs.clear()  # the runs kept no longer describe this work
        self._runs.append(seconds)
        self.typical = sorted(self._runs)[len(self._runs) // 2]

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)``, inline or in a worker thread (see the class docstring)."""
        if self.inline:
            _state.inline = True
            t0 = time.perf_counter()
            try:
                return fn(*args)
            except WouldBlock:
                pass  # retried in a thread below, which measures the wait
            finally:
                _state.inline = False
                self._observe(time.perf_counter() - t0, inline=True)  # failed runs count too
        self._in_threads += 1
        try:
            ok, value, seconds = await asyncio.to_thread(_timed, fn, args)
        finally:
            self._in_threads -= 1
        self._observe(seconds)
        if not ok:
            raise value
        return value


def _timed(fn: Callable[..., Any], args: tuple[Any, ...]) -> tuple[bool, Any, float]:
    t0 = time.perf_counter()
    try:
        return True, fn(*args), time.perf_counter() - t0
    except Exception as exc:  # re-raised on the loop, after the duration is recorded
        return False, exc, time.perf_counter() - t0


__all__ = ["ALONE_THRESHOLD", "INLINE_THRESHOLD", "RUNS_KEPT", "STALL_LIMIT", "BlockingIO", "WouldBlock", "running_inline"]
