"""Health of FPGA slots: a probe of every card each ``healthIntervalSeconds`` (and right after
each programming), reported as KEP-4680 health and KEP-5055 taints (docs/fpga.md, "Health").

| taint (NoSchedule) | when | removed |
|---|---|---|
| ``fpga.dra-framework.io/unhealthy=port-errors`` | DFL port ``errors/errors`` non-zero | errors cleared |
| ``fpga.dra-framework.io/unhealthy=afu-id-invalid`` | DFL ``afu_id`` reads all-ones (region unusable) | a valid id is read |
| ``fpga.dra-framework.io/unhealthy=not-ready`` | Alveo user PF ``ready`` reads 0 | it reads 1 |
| ``fpga.dra-framework.io/unhealthy=missing`` | a published card is gone (reset, re-enumeration) | it is back |
| ``fpga.dra-framework.io/programming=interrupted`` | an in-flight programming from a crashed run | the claim's retry or rollback |
| ``fpga.dra-framework.io/programming=failed`` | a programming or rollback failed | a later programming succeeds |

A change in what a card shows (a function loaded, a card back after a reset, a port or render
node renumbered) also requests rediscovery, so the ResourceSlice shows the current ``afuId`` and
the device name stays the same.
"""
from __future__ import annotations

import asyncio
from typing import Any, Callable

from dra_framework.api import Health, HealthReport, Taint, TaintEffect

from . import ids
from .discovery import Slot

UNHEALTHY = "fpga.dra-framework.io/unhealthy"
#: The fingerprint of a published device whose card is gone.
MISSING: tuple[Any, ...] = ("missing",)
PROGRAMMING = "fpga.dra-framework.io/programming"


def assess(slot: Slot | None, inflight: dict[str, Any] | None, active: bool) -> tuple[Health, str, list[Taint]]:
    """(health, message, taints) of one device now. ``slot`` None: the card is gone; ``inflight``:
    its programming.json entry; ``active``: a programming of it runs in this process."""
    taints: list[Taint] = []
    msgs: list[str] = []
    if slot is None:
        taints.append(Taint(UNHEALTHY, "missing", TaintEffect.NO_SCHEDULE))
        msgs.append("card not present (reset, re-enumeration or removal)")
    elif slot.port is not None:
        afu = slot.port.afu_id
        if afu == ids.ALL_ONES:
            taints.append(Taint(UNHEALTHY, "afu-id-invalid", TaintEffect.NO_SCHEDULE))
            msgs.append("afu_id reads all-ones: the region holds no valid function")
        errs = slot.port.errors
        if errs:
            taints.append(Taint(UNHEALTHY, "port-errors", TaintEffect.NO_SCHEDULE))
            msgs.append(f"port errors/errors = {errs:#x}")
    elif slot.card is not None and slot.card.user is not None and slot.card.ready is False:
        taints.append(Taint(UNHEALTHY, "not-ready", TaintEffect.NO_SCHEDULE))
        msgs.append(f"user PF {slot.card.user.bdf} reports ready = 0")
    if inflight is not None and not active:
        state = "failed" if inflight.get("state") == "failed" else "interrupted"
        taints.append(Taint(PROGRAMMING, state, TaintEffect.NO_SCHEDULE))
        msgs.append(inflight.get("reason") or f"programming of {inflight.get('target')} was interrupted "
                    f"(previous function {inflight.get('previous')}); the claim's retry or unprepare resolves it")
    health = Health.UNHEALTHY if taints else Health.HEALTHY
    return health, "; ".join(msgs), taints


def fingerprint(slot: Slot) -> tuple[Any, ...]:
    """What must be republished when it changes: function, instances (renumbering), problem."""
    nodes = tuple(slot.nodes(True))
    return (slot.afu_id(), slot.interface_id(), nodes, slot.problem)


class HealthLoop:
    def __init__(self, scan: Callable[[], list[Slot]], published: Callable[[], dict[str, tuple[Any, ...]]],
                 inflight: Callable[[], dict[str, dict[str, Any]]], active: Callable[[], set[str]],
                 rediscover: Callable[[], None], interval: float) -> None:
        self.scan, self.published, self.inflight, self.active = scan, published, inflight, active
        self.rediscover, self.interval = rediscover, interval
        self.wake = asyncio.Event()
        self.last: dict[str, tuple[Health, str, tuple[Taint, ...]]] = {}

    def poke(self) -> None:
        """Probe now (thread-safe through the loop the watcher runs on)."""
        loop = getattr(self, "_loop", None)
        if loop is not None:
            loop.call_soon_threadsafe(self.wake.set)

    def once(self, report: Callable[[HealthReport], None]) -> None:
        slots = {s.name: s for s in self.scan()}
        published = self.published()
        inflight, active = self.inflight(), self.active()
        changed = set(slots) != set(published) or any(
            name in published and fingerprint(s) != published[name] for name, s in slots.items())
        for name in sorted(set(published) | set(slots)):
            h, msg, taints = assess(slots.get(name), inflight.get(name), name in active)
            now = (h, msg, tuple(taints))
            if self.last.get(name) != now:
                self.last[name] = now
                report(HealthReport(name, h, message=msg, taints=taints))
        if changed:
            self.rediscover()

    async def run(self, report: Callable[[HealthReport], None]) -> None:
        self._loop = asyncio.get_running_loop()
        while True:
            await asyncio.to_thread(self.once, report)
            try:
                await asyncio.wait_for(self.wake.wait(), self.interval)
            except asyncio.TimeoutError:
                pass
            self.wake.clear()
