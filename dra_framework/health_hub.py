"""Runs the backends' health sources and fans their reports out.

One per driver. Reports feed the kubelet health stream (``kubelet.health.HealthState``,
KEP-4680) and the health taints merged into the published ResourceSlices (KEP-5055). A failing
source marks its devices Unknown, is logged once per failure streak, and restarts with
exponential back-off; prepare and unprepare never depend on it.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Callable, Iterable

from .composition import BackendInstance
from .kubelet.health import DeviceHealth, HealthState
from .model import HealthReport, Taint
from .model.health import Health

log = logging.getLogger(__name__)


class HealthHub:
    """``pool_name(None)`` maps the default pool to the node name; ``on_change`` is called (on the
    loop) when the taints of any device changed, so the caller can republish slices."""

    def __init__(self, state: HealthState, pool_name: Callable[[str | None], str],
                 on_change: Callable[[], None], max_backoff: float = 60.0,
                 on_problem: Callable[[str, str | None], None] | None = None,
                 on_unhealthy: Callable[[int], None] | None = None) -> None:
        self.state = state
        # (source, message) while a source fails; (source, None) once it reports again. The
        # daemon shows it in /readyz and as a Node Event
        # (docs/failure-modes.md#health-source-that-cannot-connect).
        self.on_problem = on_problem or (lambda source, message: None)
        self.pool_name = pool_name
        self.on_change = on_change
        # Called with the number of devices whose health is not Healthy after each change.
        self.on_unhealthy = on_unhealthy or (lambda n: None)
        self.max_backoff = max_backoff
        self.taints: dict[tuple[str, str], tuple[Taint, ...]] = {}
        self._tasks: list[asyncio.Task] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    def report(self, r: HealthReport) -> None:
        """Record one report. Safe from any thread (backends may report from NVML threads)."""
        loop = self._loop
        if loop is not None and not _on_loop(loop):
            loop.call_soon_threadsafe(self.report, r)
            return
        pool = self.pool_name(r.pool)
        self.state.set(pool, r.device, r.health, r.message)
        self._count_unhealthy()
        key = (pool, r.device)
        new = tuple(r.taints)
        if self.taints.get(key, ()) != new:
            if new:
                self.taints[key] = new
            else:
                self.taints.pop(key, None)
            self.on_change()

    def mark_unknown(self, devices: Iterable[tuple[str | None, str]], message: str) -> None:
        self.state.set_many([DeviceHealth(self.pool_name(p), d, Health.UNKNOWN, message, 0, 0) for p, d in devices])
        self._count_unhealthy()

    def _count_unhealthy(self) -> None:
        self.on_unhealthy(sum(1 for d in self.state.snapshot() if str(getattr(d.health, "value", d.health)) != "Healthy"))

    def start(self, backends: list[BackendInstance], devices_of: Callable[[str], list[tuple[str | None, str]]]) -> None:
        self._loop = asyncio.get_running_loop()
        for b in backends:
            if b.hooks.implements("dra_watch_health"):
                self._tasks.append(asyncio.create_task(self._run(b, devices_of), name=f"health-{b.key}"))

    async def _run(self, b: BackendInstance, devices_of: Callable[[str], list[tuple[str | None, str]]]) -> None:
        delay = 1.0
        failing = False
        reported = [False]

        source = f"health source of backend {b.key}"

        def report(r: HealthReport) -> None:
            if not reported[0] and failing:
                self.on_problem(source, None)
            reported[0] = True
            self.report(r)

        while True:
            reported[0] = False
            try:
                await b.hooks.watch_health(report)
                # A source that returns has nothing more to say; keep its last reports.
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a broken source must not stop the driver
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    # The source turned our cancellation into an error: stop anyway, or shutdown hangs.
                    raise asyncio.CancelledError from exc
                if reported[0]:  # it worked for a while: a new failure streak, fast retry again
                    failing, delay = False, 1.0
                # Once per failure streak: a source that cannot connect (docs/failure-modes.md) must not
                # log an error on every retry.
                log.log(logging.DEBUG if failing else logging.ERROR,
                        "health source of backend %s failed, devices marked Unknown; retrying in %.0fs: %s",
                        b.key, delay, exc)
                if not failing:
                    self.on_problem(source, f"failing, devices reported Unknown, retrying with back-off: {exc}")
                failing = True
                self.mark_unknown(devices_of(b.key), f"health source failed: {exc}")
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_backoff)

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
