"""Hot-plug: udev events that make a backend discover its devices again.

A VF appears or goes when an admin writes ``sriov_numvfs``; a device falls off the bus or is
hot-added; a driver is bound or unbound by someone else. :class:`HotplugWatcher` listens for the
kernel's uevents of the chosen subsystems (``add``, ``remove``, ``bind``, ``unbind``, ``change``,
``move``) and calls ``context.request_rediscovery()`` once the events have stopped for
``debounce_s`` seconds (creating 64 VFs is 64+ events, one rediscovery), and at the latest
``max_delay_s`` after the first event of a burst.

The event source is a :class:`pyudev.Monitor` on the kernel's uevent netlink socket (source
``kernel``): the events as the kernel sends them, without waiting for udevd, which a driver
container usually does not have (sysfs is complete when the kernel announces a device; the
``bind`` event follows the probe). Pass ``PyudevSource(source="udev")`` to get udevd's
re-broadcast instead (after its rules ran; needs udevd in the same network namespace). The
kernel delivers uevents to the host's network namespace, so a driver pod needs
``hostNetwork: true``; without libudev (``libudev1`` and the ld cache in the image) or the
netlink socket the watcher logs one warning and the backend keeps working without hot-plug (a
restart picks up changes). Tests inject a source with the same two methods:
:class:`dra_framework.testing.hosttree.FakeUdevSource`.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Iterable, Protocol

log = logging.getLogger(__name__)

ACTIONS = frozenset({"add", "remove", "bind", "unbind", "change", "move"})


class EventSource(Protocol):
    """Calls ``callback(action, sys_path, subsystem)`` from any thread until stopped."""

    def start(self, callback: Callable[[str, str, str], None]) -> None: ...

    def stop(self) -> None: ...


class PyudevSource:
    """The real source: a pyudev netlink monitor (``source`` ``kernel`` or ``udev``) filtered to
    ``subsystems``, run by a :class:`pyudev.MonitorObserver` thread."""

    def __init__(self, subsystems: Iterable[str] = ("pci",), source: str = "kernel") -> None:
        self.subsystems, self.source = tuple(subsystems), source
        self._observer: Any = None

    def start(self, callback: Callable[[str, str, str], None]) -> None:
        import pyudev  # loads libudev; ImportError when it is missing

        monitor = pyudev.Monitor.from_netlink(pyudev.Context(), source=self.source)
        for s in self.subsystems:
            monitor.filter_by(s)

        def on_event(device: Any) -> None:
            callback(device.action or "", device.sys_path, device.subsystem or "")

        self._observer = pyudev.MonitorObserver(monitor, callback=on_event, name="dra-udev-monitor")
        self._observer.daemon = True
        self._observer.start()

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.send_stop()
            self._observer = None


class Debouncer:
    """Calls ``fn`` once, ``delay`` seconds after the last :meth:`poke`, or ``max_delay`` after
    the first poke of a burst, whichever comes first. Thread-safe."""

    def __init__(self, fn: Callable[[], None], delay: float, max_delay: float) -> None:
        self.fn, self.delay, self.max_delay = fn, delay, max(max_delay, delay)
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._first: float | None = None

    def poke(self) -> None:
        with self._lock:
            now = time.monotonic()
            if self._first is None:
                self._first = now
            wait = min(self.delay, self._first + self.max_delay - now)
            if self._timer is not None:
                self._timer.cancel()
            self._timer = threading.Timer(max(wait, 0.0), self._fire)
            self._timer.daemon = True
            self._timer.start()

    def _fire(self) -> None:
        with self._lock:
            self._timer, self._first = None, None
        try:
            self.fn()
        except Exception:  # noqa: BLE001 - a failing trigger must not kill the timer thread silently
            log.exception("hot-plug rediscovery trigger failed")

    def cancel(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            self._timer, self._first = None, None


class HotplugWatcher:
    """Debounced rediscovery on udev events. ``trigger`` is usually
    ``context.request_rediscovery``; ``source`` defaults to :class:`PyudevSource`
    (``subsystems``); ``match(action, sys_path, subsystem)`` can narrow the events further
    (for example to one vendor's devices). :meth:`start` never raises."""

    def __init__(self, trigger: Callable[[], None], *, subsystems: Iterable[str] = ("pci",),
                 source: EventSource | None = None, debounce_s: float = 0.5, max_delay_s: float = 5.0,
                 match: Callable[[str, str, str], bool] | None = None) -> None:
        self.source = source if source is not None else PyudevSource(subsystems)
        self.match = match
        self.events = 0
        self._debouncer = Debouncer(trigger, debounce_s, max_delay_s)
        self.running = False

    def _on_event(self, action: str, sys_path: str, subsystem: str) -> None:
        if action not in ACTIONS or (self.match is not None and not self.match(action, sys_path, subsystem)):
            return
        self.events += 1
        log.debug("udev %s %s (%s): rediscovery scheduled", action, sys_path, subsystem)
        self._debouncer.poke()

    def start(self) -> bool:
        """Start listening; False (with one warning) when the source cannot start."""
        try:
            self.source.start(self._on_event)
        except Exception as exc:  # noqa: BLE001 - hot-plug is optional, never fatal
            log.warning("hot-plug events unavailable (%s: %s); devices added or removed later are "
                        "picked up on restart", type(exc).__name__, exc)
            return False
        self.running = True
        return True

    def stop(self) -> None:
        """Stop watching: cancel a pending debounced rediscovery and stop the event source."""
        self._debouncer.cancel()
        if self.running:
            self.running = False
            try:
                self.source.stop()
            except Exception as exc:  # noqa: BLE001
                log.debug("stopping the hot-plug source: %s", exc)


def watch_hotplug(context: Any, **kwargs: Any) -> HotplugWatcher:
    """A started :class:`HotplugWatcher` that calls ``context.request_rediscovery()``; pass
    the same keyword arguments as to the class. Stop it in ``dra_shutdown``."""
    w = HotplugWatcher(context.request_rediscovery, **kwargs)
    w.start()
    return w
