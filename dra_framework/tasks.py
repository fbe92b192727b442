"""Supervised background tasks: one place for back-off, restarts, shutdown and problem reports.

Modelled on aiojobs' ``Scheduler`` (https://aiojobs.readthedocs.io/: spawn, close cancels
everything, one exception handler) and on client-go's ``wait.Backoff``
(https://pkg.go.dev/k8s.io/apimachinery/pkg/util/wait#Backoff: initial delay, factor, cap,
jitter). Why not a library: see docs/design.md "Dependencies".

- :class:`Backoff`: the delays between retries (exponential, capped, optional jitter).
- :class:`TaskSupervisor`: owns background tasks of one component. :meth:`~TaskSupervisor.spawn`
  runs a coroutine function, logging and reporting a crash and (with ``restart=``) running it
  again after the next back-off delay; :meth:`~TaskSupervisor.retry` retries a call until it
  succeeds; :meth:`~TaskSupervisor.every` runs a check periodically; :meth:`~TaskSupervisor.close`
  cancels every task and waits for them. Finished tasks are forgotten at once.
- One channel for problems: :meth:`~TaskSupervisor.report` ``(source, message | None)`` from any
  thread; ``None`` clears the source; ``ttl=`` clears it after that many seconds.
"""
from __future__ import annotations

import asyncio
import logging
import random
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
#: ``on_problem(source, message)``: a background problem of ``source`` (``None``: it is over).
ProblemSink = Callable[[str, "str | None"], None]


@dataclass(frozen=True)
class Backoff:
    """Delays (seconds) ``initial``, ``initial*factor``, ... capped at ``cap``, each stretched by
    up to ``jitter`` (a fraction) at random so that many nodes do not retry in lock-step."""

    initial: float = 1.0
    factor: float = 2.0
    cap: float = 60.0
    jitter: float = 0.0

    def __post_init__(self) -> None:
        if self.initial <= 0 or self.factor < 1 or self.cap < self.initial or self.jitter < 0:
            raise ValueError(f"invalid back-off {self}")

    def delays(self) -> Iterator[float]:
        delay = self.initial
        while True:
            yield delay * (1 + random.uniform(0, self.jitter)) if self.jitter else delay
            delay = min(delay * self.factor, self.cap)


class TaskSupervisor:
    """The background tasks of one component (``name`` prefixes task names and log lines).
    ``on_problem`` receives reports (see :meth:`report`) on the event loop; without it they are
    logged only. Create it inside the running loop, or call :meth:`bind` once there."""

    def __init__(self, name: str, on_problem: ProblemSink | None = None) -> None:
        self.name = name
        self.on_problem = on_problem
        self._tasks: set[asyncio.Task[Any]] = set()
        self._expiry: dict[str, asyncio.TimerHandle] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        try:
            self.bind(asyncio.get_running_loop())
        except RuntimeError:
            pass

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread = threading.get_ident()

    @property
    def closed(self) -> bool:
        """True after :meth:`close`: nothing new can be spawned."""
        return self._closed

    @property
    def tasks(self) -> frozenset[asyncio.Task[Any]]:
        """The tasks still running."""
        return frozenset(self._tasks)

    # --- tasks ------------------------------------------------------------------------------

    def spawn(self, name: str, fn: Callable[[], Awaitable[Any]], *, restart: Backoff | None = None) -> asyncio.Task[Any]:
        """Run ``fn()`` as a task. If it raises, the error is logged and reported under
        ``task:<name>``; with ``restart`` it then runs again after the next delay (the report is
        cleared once a run lasted longer than that delay). Returns the task."""
        if self._loop is None:
            self.bind(asyncio.get_running_loop())
        if self._closed:
            raise RuntimeError(f"{self.name}: supervisor is closed")
        task = asyncio.ensure_future(self._supervise(name, fn, restart))
        task.set_name(f"{self.name}/{name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def spawn_threadsafe(self, name: str, fn: Callable[[], Awaitable[Any]]) -> None:
        """:meth:`spawn` from any thread (callbacks of hardware event threads, worker threads)."""
        self._call_soon(lambda: None if self._closed else self.spawn(name, fn))

    async def _supervise(self, name: str, fn: Callable[[], Awaitable[Any]], restart: Backoff | None) -> None:
        source = f"task:{name}"
        loop = asyncio.get_running_loop()
        delays = restart.delays() if restart else None
        delay = 0.0  # the last restart delay; 0: no failure so far
        while True:
            started = loop.time()
            # a restarted run that lasts longer than the delay before it clears the report
            stable = loop.call_later(delay, self.report, source, None) if delay else None
            try:
                await fn()
                if delay:
                    self.report(source, None)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if stable is not None:
                    stable.cancel()
                log.error("%s: background task %s failed: %s", self.name, name, exc, exc_info=exc)
                if restart is None or delays is None:
                    self.report(source, f"background task {name} failed: {exc}")
                    return
                if delay and loop.time() - started > delay:  # it ran fine for a while: start over
                    delays = restart.delays()
                delay = next(delays)
                self.report(source, f"background task {name} failed (restarting in {delay:.0f}s): {exc}")
                await asyncio.sleep(delay)
            finally:
                if stable is not None:
                    stable.cancel()

    async def retry(self, source: str, fn: Callable[[], Awaitable[T]], backoff: Backoff,
                    describe: Callable[[BaseException], str] = str, what: str = "") -> T:
        """``await fn()`` until it succeeds and return its result. Each failure is reported under
        ``source`` (``<what>: <describe(error)>``, only when the text changes) and waited out with
        the next delay of ``backoff``; success clears the report."""
        delays = backoff.delays()
        last = None
        while True:
            try:
                result = await fn()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                msg = f"{what}: {describe(exc)}" if what else describe(exc)
                if msg != last:
                    self.report(source, msg)
                    last = msg
                await asyncio.sleep(next(delays))
                continue
            self.report(source, None)
            return result

    def every(self, name: str, interval: float, check: Callable[[], Awaitable[None]],
              what: str = "") -> asyncio.Task[Any]:
        """Run ``check()`` every ``interval`` seconds (the first time after one interval). An error
        is reported under ``name`` (``<what>: <error>``) and cleared by the next success."""

        async def loop() -> None:
            while True:
                await asyncio.sleep(interval)
                try:
                    await check()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self.report(name, f"{what}: {exc}" if what else str(exc))
                    continue
                self.report(name, None)

        return self.spawn(name, loop)

    async def close(self) -> None:
        """Cancel every task (also those spawned meanwhile) and wait until they have ended."""
        self._closed = True
        for handle in self._expiry.values():
            handle.cancel()
        self._expiry.clear()
        while self._tasks:
            tasks = list(self._tasks)
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    # --- problems ---------------------------------------------------------------------------

    def report(self, source: str, message: str | None, *, ttl: float | None = None) -> None:
        """Report a background problem of ``source`` (``None``: it is over); safe from any
        thread. ``ttl``: clear it after that many seconds unless reported again meanwhile."""
        self._call_soon(lambda: self._deliver(source, message, ttl))

    def _deliver(self, source: str, message: str | None, ttl: float | None) -> None:
        old = self._expiry.pop(source, None)
        if old is not None:
            old.cancel()
        if ttl is not None and message is not None and self._loop is not None and not self._closed:
            self._expiry[source] = self._loop.call_later(ttl, self._deliver, source, None, None)
        if self.on_problem is None:
            if message is not None:
                log.warning("%s: %s: %s", self.name, source, message)
            return
        try:
            self.on_problem(source, message)
        except Exception:  # a reporting failure must not take the reporter down
            log.exception("%s: problem callback failed", self.name)

    def _call_soon(self, fn: Callable[[], Any]) -> None:
        loop = self._loop
        if loop is None:
            fn()
        elif threading.get_ident() == self._thread:
            fn()
        elif not loop.is_closed():
            loop.call_soon_threadsafe(fn)


__all__ = ["Backoff", "ProblemSink", "TaskSupervisor"]
