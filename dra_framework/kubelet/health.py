"""Per-driver device health, fed by health sources, read by the health servicers.

Semantics (docs/protocol.md#health-stream): every message the plugin streams is the
driver's *full* device list; the kubelet marks a device Unknown if it is not
reported within its timeout (default 30 s, or health_check_timeout_seconds),
so the servicer resends the snapshot periodically. Messages over 1024
characters are truncated by the kubelet; we truncate the same way first.
"""
from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from ..model.health import Health  # one enum for backends and the wire layer

MAX_MESSAGE_LEN = 1024




@dataclass(frozen=True)
class DeviceHealth:
    """Health of one device.

    last_updated: Unix seconds (float) when the source last reported it.
    timeout_seconds: health_check_timeout_seconds for this device; 0 = the
        state's default (which itself may be 0 = kubelet default, 30 s).
    """

    pool: str
    device: str
    health: Health = Health.UNKNOWN
    message: str = ""
    last_updated: float = 0.0
    timeout_seconds: int = 0

    @property
    def key(self) -> tuple[str, str]:
        return (self.pool, self.device)


def truncate_message(msg: str) -> str:
    """Cut to 1024 chars as the kubelet does: 1021 chars plus "..."."""
    return msg if len(msg) <= MAX_MESSAGE_LEN else msg[: MAX_MESSAGE_LEN - 3] + "..."


class Subscription:
    """Change notification for one watcher; use as a context manager.

    `await sub.wait(timeout)` returns True when the state changed since the
    last wait (or `wake()` was called), False on timeout.
    """

    def __init__(self, state: "HealthState") -> None:
        self._state = state
        self._loop = asyncio.get_running_loop()
        self._event = asyncio.Event()

    def _notify(self) -> None:
        # Health sources may run in threads (e.g. vendor event callbacks).
        try:
            if _running_loop() is self._loop:
                self._event.set()
            else:
                self._loop.call_soon_threadsafe(self._event.set)
        except RuntimeError:  # loop closed: watcher is gone
            pass

    def wake(self) -> None:
        """Wake the waiter without a state change (used on shutdown)."""
        self._notify()

    async def wait(self, timeout: float | None = None) -> bool:
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        self._event.clear()
        return True

    def close(self) -> None:
        self._state._unsubscribe(self)

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class HealthState:
    """Device health of one driver: (pool, device) -> DeviceHealth.

    Thread-safe for writers; subscribers live on an asyncio loop.
    default_timeout_seconds fills health_check_timeout_seconds for devices
    that set none (0 = leave the kubelet default of 30 s).
    """

    def __init__(self, driver: str, *, default_timeout_seconds: int = 0,
                 clock: Callable[[], float] = time.time) -> None:
        self.driver = driver
        self.default_timeout_seconds = default_timeout_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._devices: dict[tuple[str, str], DeviceHealth] = {}
        self._subs: set[Subscription] = set()

    def set(self, pool: str, device: str, health: Health | str, message: str = "", *,
            at: float | None = None, timeout_seconds: int = 0) -> None:
        """Set one device's health; `at` defaults to now (Unix seconds)."""
        self.set_many([DeviceHealth(pool, device, Health(health), message,
                                    self._clock() if at is None else at, timeout_seconds)])

    def set_many(self, devices: Iterable[DeviceHealth], *, replace_all: bool = False) -> None:
        """Bulk update; with replace_all=True devices not listed are dropped.

        Entries with last_updated == 0 are stamped with the current time.
        Subscribers are notified once per call.
        """
        now = self._clock()
        fresh = {}
        for d in devices:
            d = replace(d, health=Health(d.health), message=truncate_message(d.message),
                        last_updated=d.last_updated or now)
            fresh[d.key] = d
        with self._lock:
            if replace_all:
                self._devices = fresh
            else:
                self._devices.update(fresh)
            subs = list(self._subs)
        for s in subs:
            s._notify()

    def remove(self, pool: str, device: str) -> None:
        """Forget a device (it is no longer reported at all)."""
        with self._lock:
            gone = self._devices.pop((pool, device), None) is not None
            subs = list(self._subs)
        if gone:
            for s in subs:
                s._notify()

    def snapshot(self) -> list[DeviceHealth]:
        """All devices, sorted by (pool, device), timeouts defaulted."""
        with self._lock:
            devs = sorted(self._devices.values(), key=lambda d: d.key)
        dflt = self.default_timeout_seconds
        return [d if d.timeout_seconds or not dflt else replace(d, timeout_seconds=dflt) for d in devs]

    def subscribe(self) -> Subscription:
        """Create a change subscription; must be called on the watcher's loop."""
        sub = Subscription(self)
        with self._lock:
            self._subs.add(sub)
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._subs.discard(sub)

    @property
    def subscriber_count(self) -> int:
        with self._lock:
            return len(self._subs)
