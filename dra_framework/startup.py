"""Serving the kubelet sockets before a driver has started (docs/operations.md, "Start-up").

``dra-framework run`` binds each driver's DRA socket and then its registration socket right after
the config is loaded, before the backends are imported, devices discovered and the checkpoint
reconciled: the kubelet's GetInfo is answered at once. Until the driver has started, its calls
go to a :class:`StartingEngine`: they wait for the start-up (bounded by the call's deadline), a
driver whose start-up failed answers every claim with the reason, and the daemon keeps retrying
the start-up behind the same sockets.

This module imports only the gRPC layer: it runs before anything heavy is imported.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config_source import DEFAULT_HEALTH_RESEND_SECONDS, MAX_HEALTH_RESEND_SECONDS, RawConfig
from .kubelet.types import CALL_DEADLINE, ClaimRef, DRAEngine, PrepareOutcome
from .kubenames import is_driver_name
from .paths import DEFAULT_KUBELET_ROOT

if TYPE_CHECKING:
    from .config import Settings
    from .kubelet.server import PluginServer

log = logging.getLogger(__name__)

#: s; the longest a call without a deadline waits for the start-up (the kubelet's own
#: per-call timeout is 45 s and it always sends a deadline: docs/protocol.md).
MAX_WAIT = 45.0
#: s; answer this long before the call's deadline, so the answer still reaches the caller.
DEADLINE_MARGIN = 0.5


class StartingEngine:
    """A :class:`~dra_framework.kubelet.types.DRAEngine` for a driver that has not started yet.

    ``started(engine)`` hands waiting and later calls to the real engine; ``failed(reason)``
    makes them answer ``driver <name> did not start: <reason>`` per claim (until a retried
    start-up succeeds). A call that waits until its deadline gets ``driver <name> is still
    starting (retry)`` per claim; the kubelet retries failed preparations.
    """

    def __init__(self, driver: str) -> None:
        self.driver = driver
        self.engine: DRAEngine | None = None
        self.failure: str | None = None
        self._changed = asyncio.Event()

    def started(self, engine: DRAEngine) -> None:
        self.engine, self.failure = engine, None
        self._wake()

    def failed(self, reason: str) -> None:
        self.failure = reason
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _engine(self) -> DRAEngine | str:
        """The started engine, or the error text for every claim of the call."""
        deadline = CALL_DEADLINE.get()
        until = (deadline - DEADLINE_MARGIN) if deadline is not None else time.monotonic() + MAX_WAIT
        while self.engine is None:
            if self.failure is not None:
                return f"driver {self.driver} did not start: {self.failure}"
            left = until - time.monotonic()
            if left <= 0:
                return f"driver {self.driver} is still starting (retry)"
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except TimeoutError:
                pass
        return self.engine

    async def prepare(self, claims: list[ClaimRef]) -> dict[str, PrepareOutcome]:
        engine = await self._engine()
        if isinstance(engine, str):
            return {c.uid: PrepareOutcome(error=engine) for c in claims}
        return await engine.prepare(claims)

    async def unprepare(self, claims: list[ClaimRef]) -> dict[str, str]:
        engine = await self._engine()
        if isinstance(engine, str):
            return {c.uid: engine for c in claims}
        return await engine.unprepare(claims)


#: Settings field names pydantic also accepts in place of the YAML keys the sockets need.
_FIELD_SPELLINGS = ("kubelet_root_dir", "pod_uid", "health_resend_seconds")


@dataclass(frozen=True)
class SocketSettings:
    """What serving the kubelet sockets needs: the driver names, ``kubeletRootDir``, ``podUID``
    and ``healthResendSeconds``."""

    drivers: tuple[str, ...]
    kubelet_root_dir: Path
    pod_uid: str
    health_resend_seconds: float

    @classmethod
    def of(cls, settings: Settings) -> SocketSettings:
        return cls(tuple(d.name for d in settings.drivers), Path(settings.kubelet_root_dir), settings.pod_uid,
                   float(settings.health_resend_seconds))

    @classmethod
    def read(cls, raw: RawConfig) -> SocketSettings | None:
        """From the merged, not yet validated sources; None when a value is missing or not plainly
        valid (the daemon then validates first and serves after). Whatever is read here is
        compared with the validated settings, and the sockets are served again if they differ."""
        data = raw.data
        if any(name in data for name in _FIELD_SPELLINGS):  # pydantic reads these too: not guessed
            return None
        drivers = data.get("drivers")
        if not isinstance(drivers, list) or not drivers:
            return None
        names = [d.get("name") if isinstance(d, dict) else None for d in drivers]
        if any(not isinstance(n, str) or not is_driver_name(n) for n in names):
            return None
        if len(set(names)) != len(names):
            return None
        root, pod_uid = data.get("kubeletRootDir", DEFAULT_KUBELET_ROOT), data.get("podUID", "")
        resend = data.get("healthResendSeconds", DEFAULT_HEALTH_RESEND_SECONDS)
        if not isinstance(root, str) or not root or not isinstance(pod_uid, str) or isinstance(resend, bool):
            return None
        try:
            resend = float(resend)
        except (TypeError, ValueError):
            return None
        if not 0 < resend <= MAX_HEALTH_RESEND_SECONDS:
            return None
        from .kubelet.sockets import socket_paths

        try:  # paths that do not fit get validation's error, which names the setting
            for n in names:
                socket_paths(str(n), root, pod_uid=pod_uid or None)
        except ValueError:
            return None
        return cls(tuple(str(n) for n in names), Path(root), pod_uid, resend)


@dataclass
class EarlyServer:
    """One driver's sockets, served from before its start-up: ``server`` answers with ``gate``
    until the driver runtime attaches its engine."""

    server: PluginServer
    gate: StartingEngine
    made_plugin_dir: bool = False  # the plugin directory did not exist before


async def serve_early(settings: SocketSettings, notes: list[str] | None = None) -> dict[str, EarlyServer]:
    """Bind every driver's DRA socket, then its registration socket (driver name → EarlyServer).
    Left out, so that its runtime binds the sockets at the end of its start-up as before:
    a driver with another live instance (a rolling update: the kubelet keeps calling the old
    pod until this one is ready), and one whose sockets cannot be bound yet (the kubelet's plugin
    registry directory is missing, say; the start-up then reports the error). ``notes`` gets a
    line per driver left out for another live instance, for the log once the config is valid."""
    from .kubelet.server import PluginServer
    from .kubelet.sockets import live_instances

    out: dict[str, EarlyServer] = {}
    for name in settings.drivers:
        gate = StartingEngine(name)
        try:
            server = PluginServer(name, gate, kubelet_root=str(settings.kubelet_root_dir),
                                  pod_uid=settings.pod_uid or None, advertise_health=True, starting=True,
                                  health_resend_interval=settings.health_resend_seconds)
            others = live_instances(server.paths, name)
            if others:
                if notes is not None:
                    notes.append(f"driver {name}: another instance serves {', '.join(others)}; "
                                 "its sockets follow the start-up")
                continue
            made = not os.path.isdir(server.paths.plugin_dir)  # noqa: ASYNC240 - one stat, local
            await server.start()
        except Exception as exc:  # noqa: BLE001 - retried by the driver's own start-up
            log.debug("driver %s: sockets not served before start-up: %s", name, exc)
            continue
        out[name] = EarlyServer(server, gate, made)
    return out


async def stop_early(servers: dict[str, EarlyServer], why: str) -> None:
    """Answer calls still waiting with ``why`` and stop the sockets (registration first). A
    driver that never started leaves no plugin directory it made (a refused config)."""
    for early in servers.values():
        started = early.gate.engine is not None
        if not started:
            early.gate.failed(why)
        await early.server.stop()
        if not started and early.made_plugin_dir:
            with contextlib.suppress(OSError):  # only while empty
                os.rmdir(early.server.paths.plugin_dir)


def attach(early: EarlyServer | None, engine: Any) -> None:
    """Hand the calls waiting behind ``early`` to the started ``engine``."""
    if early is not None:
        early.gate.started(engine)
