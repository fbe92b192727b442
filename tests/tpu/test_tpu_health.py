"""Chip health: a missing device file or a chip off the bus taints the chip and every device
holding it; the taints go when it is back (the watcher's reports, as the health hub gets them)."""
from __future__ import annotations

import shutil

from tpu_helpers import DRIVER, backend, build_host, discover

from dra_framework.api import Health, TaintEffect

KEY = f"{DRIVER}/chip-unhealthy"


def _state(reports):
    return {r.device: (r.health, tuple((t.key, t.value, t.effect) for t in r.taints)) for r in reports}


def test_missing_device_file_and_off_bus_taint_the_devices_holding_the_chip(tmp_path):
    host = build_host("tpu-v5e-8", tmp_path / "h")
    b = backend(host, tmp_path / "s")
    devs = discover(b)
    first = _state(b.health.reports())
    assert set(first) == set(devs) and all(h == Health.HEALTHY and not t for h, t in first.values())
    assert b.health.reports() == []  # only changes are reported

    (host / "dev/vfio/2").unlink()
    got = _state(b.health.reports())
    bad = (Health.UNHEALTHY, ((KEY, "device-file-missing", TaintEffect.NO_SCHEDULE),))
    assert got == {n: bad for n in ("tpu-0000-00-06-0", "tpu-1x2-1", "tpu-2x2-0", "tpu-host")}

    shutil.move(host / "sys/bus/pci/devices/0000:00:0b.0", tmp_path / "bdf-link")  # chip 7 falls off the bus
    got = _state(b.health.reports())
    off = (Health.UNHEALTHY, ((KEY, "off-bus", TaintEffect.NO_SCHEDULE),))
    assert got == {n: off for n in ("tpu-0000-00-0b-0", "tpu-1x2-3", "tpu-2x2-1", "tpu-host")}

    host.joinpath("dev/vfio/2").write_text("")
    shutil.move(tmp_path / "bdf-link", host / "sys/bus/pci/devices/0000:00:0b.0")
    got = _state(b.health.reports())
    assert set(got) == {"tpu-0000-00-06-0", "tpu-1x2-1", "tpu-2x2-0", "tpu-host", "tpu-0000-00-0b-0", "tpu-1x2-3",
                        "tpu-2x2-1"}
    assert all(h == Health.HEALTHY and not t for h, t in got.values())


def test_health_message_names_the_file(tmp_path):
    host = build_host("tpu-v4-4", tmp_path / "h")
    b = backend(host, tmp_path / "s", acceleratorType="v4-8")
    discover(b)
    b.health.reports()
    (host / "dev/accel1").unlink()
    msgs = {r.device: r.message for r in b.health.reports()}
    assert msgs["tpu-0000-00-05-0"] == "TPU device file /dev/accel1 is missing"
