"""Scenarios from public DRA driver bug reports around discovery and the daemon's start-up:
silent empty publishing (docs/failure-modes.md#backend-that-discovers-nothing) and the Node
owning node-local slices (docs/failure-modes.md#slices-left-behind-after-the-node-is-deleted)."""
from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest

from dra_framework import hookimpl
from dra_framework.backend import BackendContext
from dra_framework.composition import BackendInstance, discover
from dra_framework.model import Device
from dra_framework.plugins import BackendHooks

DRIVER = "gpu.example.com"


class Backend:
    def __init__(self, names, feature=False):
        self.names, self.feature = names, feature

    @hookimpl
    def dra_discover(self, inventory):
        for n in self.names:
            dev = Device(n, attributes={"index": int(n.rsplit("-", 1)[1])})
            # A backend-specific feature path (HAMi-core mode in the original report) that
            # builds the devices the other way; they must still be published.
            if self.feature:
                inventory.add_device(dev, pool="shared")
            else:
                inventory.add_device(dev)


def instance(key: str, obj: object, tmp_path: Path) -> BackendInstance:
    ctx = BackendContext(driver_name=DRIVER, node_name="n1", host_root=tmp_path, state_dir=tmp_path / key,
                         cdi_root=tmp_path / "cdi", backend_name=key)
    return BackendInstance(key, key, BackendHooks(f"{DRIVER}/{key}", obj), ctx)


@pytest.mark.parametrize("feature", [False, True])
async def test_discovered_devices_all_published_and_empty_backend_warned(tmp_path, caplog, feature):
    """docs/failure-modes.md#backend-that-discovers-nothing:
    every device a backend reports ends up in the driver's inventory (what the slices
    are built from) on every feature path, and a backend that reports success with no devices
    is logged as a warning naming it, instead of publishing an empty pool silently."""
    from dra_framework.slices.convert import build_pools

    caplog.set_level(logging.WARNING, logger="dra_framework.composition")
    inv = await discover([instance("gpu", Backend(["gpu-0", "gpu-1"], feature), tmp_path),
                          instance("empty", Backend([]), tmp_path)])
    published = {(p, d.name) for p, pool in inv.pools.items() for d in pool.devices}
    pool = "shared" if feature else None
    assert published == {(pool, "gpu-0"), (pool, "gpu-1")}
    desired, report = build_pools(inv, driver=DRIVER, node_name="n1")
    in_slices = {d["name"] for dp in desired.values() for s in dp.slices for d in s.get("devices", [])}
    assert in_slices == {"gpu-0", "gpu-1"} and not report.errors
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "backend empty discovered no devices" in warnings[0], warnings


async def test_missing_node_is_reported_and_waited_for(caplog, monkeypatch):
    """docs/failure-modes.md#slices-left-behind-after-the-node-is-deleted:
    the Node's UID (owner of node-local slices) is looked up at start-up; a missing
    Node is logged as an error naming it (no slices without an owner), and the daemon picks the
    UID up once the Node exists."""
    from lightkube.core.exceptions import ApiError
    from lightkube.models.meta_v1 import Status

    from dra_framework import daemon

    calls = []

    class Client:
        async def get(self, kind, name):
            calls.append(name)
            if len(calls) == 1:
                raise ApiError(status=Status(code=404, message=f'nodes "{name}" not found'))
            return SimpleNamespace(metadata=SimpleNamespace(uid="node-uid-1"))

    caplog.set_level(logging.ERROR, logger="dra_framework.daemon")
    real_sleep = asyncio.sleep

    async def fast_sleep(s):
        await real_sleep(0)
    monkeypatch.setattr(daemon.asyncio, "sleep", fast_sleep)  # skip the 1 s retry delay
    assert await daemon._node_uid(Client(), "node-x") == "node-uid-1"
    assert calls == ["node-x", "node-x"]
    assert any("Node 'node-x' not found" in r.getMessage() for r in caplog.records)
