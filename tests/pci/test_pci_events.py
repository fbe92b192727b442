"""Hot-plug: udev events debounced into one rediscovery; the real pyudev source starts or warns."""
import logging
import threading
import time

from dra_framework.pci import HotplugWatcher, PyudevSource, watch_hotplug
from dra_framework.pci.events import Debouncer
from dra_framework.testing.hosttree import FakeUdevSource


def _wait(pred, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not pred() and time.monotonic() < deadline:
        time.sleep(0.01)
    return pred()


def test_a_burst_of_events_triggers_one_rediscovery():
    calls = []
    src = FakeUdevSource()
    w = HotplugWatcher(lambda: calls.append(time.monotonic()), source=src, debounce_s=0.3)
    assert w.start()
    t0 = time.monotonic()
    for i in range(64):  # echo 64 > sriov_numvfs
        src.emit("add", f"/sys/devices/pci0000:16/0000:16:01.0/0000:17:{1 + i // 8:02x}.{i % 8}")
    src.emit("bind", "/sys/devices/pci0000:16/0000:16:01.0/0000:17:01.0")
    assert _wait(lambda: calls)
    time.sleep(0.5)
    assert len(calls) == 1 and calls[0] - t0 >= 0.3 and w.events == 65
    w.stop()
    assert src.stopped
    src.emit("remove", "/sys/devices/x")
    time.sleep(0.2)
    assert len(calls) == 1


def test_unrelated_actions_and_filter():
    calls = []
    src = FakeUdevSource()
    w = HotplugWatcher(lambda: calls.append(1), source=src, debounce_s=0.05,
                       match=lambda action, path, subsystem: "0000:17:" in path)
    w.start()
    src.emit("online", "/sys/devices/pci0000:16/0000:16:01.0/0000:17:01.0")
    src.emit("add", "/sys/devices/pci0000:00/0000:00:1f.6")
    time.sleep(0.2)
    assert calls == []
    src.emit("remove", "/sys/devices/pci0000:16/0000:16:01.0/0000:17:01.0")
    assert _wait(lambda: calls == [1])
    w.stop()


def test_max_delay_caps_a_never_ending_stream():
    fired = threading.Event()
    d = Debouncer(fired.set, delay=0.2, max_delay=0.3)
    t0 = time.monotonic()
    while not fired.is_set() and time.monotonic() - t0 < 3:
        d.poke()
        time.sleep(0.02)
    assert fired.is_set() and time.monotonic() - t0 < 1.0
    d.cancel()


def test_watch_hotplug_calls_request_rediscovery():
    class Ctx:
        n = 0

        def request_rediscovery(self):
            self.n += 1

    ctx, src = Ctx(), FakeUdevSource()
    w = watch_hotplug(ctx, source=src, debounce_s=0.02)
    src.emit("add", "/sys/devices/pci0000:16/0000:16:01.0/0000:17:01.0")
    assert _wait(lambda: ctx.n == 1)
    w.stop()


def test_a_source_that_cannot_start_is_one_warning(caplog):
    class Broken:
        def start(self, cb):
            raise PermissionError("netlink: operation not permitted")

        def stop(self):
            raise AssertionError("not started")

    w = HotplugWatcher(lambda: None, source=Broken())
    with caplog.at_level(logging.WARNING):
        assert w.start() is False
    assert "hot-plug events unavailable (PermissionError" in caplog.text
    w.stop()


def test_real_pyudev_netlink_source_starts_and_stops(caplog):
    """The default source on this machine: either a running netlink monitor, or one warning."""
    w = HotplugWatcher(lambda: None, source=PyudevSource(("pci", "net"), source="udev"))
    with caplog.at_level(logging.WARNING):
        started = w.start()
    assert started or "hot-plug events unavailable" in caplog.text
    w.stop()


def synthetic_uevent_target():
    """A real PCI device whose ``uevent`` file takes a synthetic event (root, writable sysfs)."""
    import os
    try:
        dev = sorted(os.listdir("/sys/bus/pci/devices"))[0]
    except (OSError, IndexError):
        return None
    path = f"/sys/bus/pci/devices/{dev}/uevent"
    return path if os.geteuid() == 0 and os.access(path, os.W_OK) else None


def test_real_kernel_uevent_triggers_rediscovery():
    """The default source on a real kernel: a synthetic ``change`` uevent on a PCI device (what
    the kernel sends for hot-plug too) reaches the watcher through netlink."""
    import pytest
    target = synthetic_uevent_target()
    if target is None:
        pytest.skip("needs root and a writable /sys/bus/pci/devices/*/uevent")
    calls = []
    w = HotplugWatcher(lambda: calls.append(1), debounce_s=0.05)
    if not w.start():
        pytest.skip("no netlink uevent socket here")
    try:
        time.sleep(0.1)
        with open(target, "w") as f:
            f.write("change")
        assert _wait(lambda: calls, 5), "no uevent arrived"
        assert w.events >= 1
    finally:
        w.stop()
