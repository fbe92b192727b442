"""Periodic janitor: rolls back interrupted prepares whose claim is gone.

Why: docs/failure-modes.md#interrupted-prepare-whose-claim-is-gone.

A ``PrepareStarted`` entry is left behind when the driver died (or a rollback failed) during a
prepare. If the kubelet still wants the claim it will call Prepare or Unprepare again, and the
engine rolls the entry back then. If the ResourceClaim was deleted (or re-created under the same
name with another UID), no call will ever come: the janitor rolls such entries back. Entries of
claims that exist, and claims with an operation in flight in this process, are left alone.
Completed entries are never touched (the kubelet's own checkpoint drives their unprepare).
Each pass also removes CDI claim specs that have no checkpoint entry (left when removing a spec
failed during unprepare).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging

from .engine import PrepareEngine
from .interfaces import ClaimGetter

log = logging.getLogger("dra_framework.engine.janitor")

DEFAULT_INTERVAL = 600.0  # s, as the NVIDIA driver's CheckpointCleanupManager


class Janitor:
    """``engine``: the driver's PrepareEngine; ``get_claim``: defaults to the engine's getter;
    ``interval``: seconds between passes (the first pass runs at once when started)."""

    def __init__(self, engine: PrepareEngine, *, get_claim: ClaimGetter | None = None,
                 interval: float = DEFAULT_INTERVAL) -> None:
        if interval <= 0:
            raise ValueError("janitor interval must be > 0 seconds")
        self.engine = engine
        self.get_claim = get_claim or engine.get_claim
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    async def run_once(self) -> list[str]:
        """One pass; returns the UIDs rolled back. Never raises (errors are logged)."""
        rolled: list[str] = []
        try:
            await self.engine.checkpoint.refresh()
        except Exception as exc:
            log.warning("janitor: cannot refresh the checkpoint: %s", exc)
        for uid, entry in list(self.engine.checkpoint.claims.items()):
            if not entry.unfinished() or self.engine.is_busy(uid):
                continue
            ns, name = entry.namespace, entry.name
            try:
                obj = await self.get_claim(ns, name)
            except Exception as exc:
                log.info("janitor: cannot check claim %s/%s (%s): %s", ns, name, uid, exc)
                continue
            current_uid = (obj or {}).get("metadata", {}).get("uid") if obj is not None else None
            if current_uid == uid:
                continue
            why = "deleted" if obj is None else f"replaced by UID {current_uid}"
            try:
                if await self.engine.rollback_stale(uid):
                    rolled.append(uid)
                    log.info("janitor: rolled back interrupted prepare of claim %s/%s (%s): claim %s",
                             ns, name, uid, why)
            except Exception as exc:
                log.warning("janitor: rolling back claim %s/%s (%s) failed, will retry: %s", ns, name, uid, exc)
        await self.engine.sweep_stale_cdi_specs()
        return rolled

    async def run(self) -> None:
        """Run passes forever (cancel to stop)."""
        while True:
            await self.run_once()
            await asyncio.sleep(self.interval)

    def start(self) -> asyncio.Task[None]:
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self.run())
        return self._task

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
