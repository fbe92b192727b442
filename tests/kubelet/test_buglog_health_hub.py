"""A health source that cannot connect (docs/failure-modes.md#health-source-that-cannot-connect),
through the real HealthHub, HealthState and PluginServer."""
from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from dra_framework import hookimpl
from dra_framework.backend import BackendContext
from dra_framework.composition import BackendInstance
from dra_framework.health_hub import HealthHub
from dra_framework.kubelet import ClaimRef, Health, HealthState, PluginServer, client
from dra_framework.model import Health as MHealth
from dra_framework.model import HealthReport
from dra_framework.plugins import BackendHooks

from .conftest import DRIVER

NODE = "node-a"


class NoDaemon:
    """The health daemon never comes up: every connect fails. On cancellation (SIGTERM while
    waiting for it) it raises its last error instead of CancelledError, as the buggy loop did."""

    def __init__(self) -> None:
        self.attempts = 0
        self.report_first = False

    @hookimpl
    async def dra_watch_health(self, report):
        self.attempts += 1
        if self.report_first:
            report(HealthReport("gpu-0", MHealth.HEALTHY))
        try:
            await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            raise ConnectionError("xpumd: connection refused") from None
        raise ConnectionError("xpumd: connection refused")


def instance(tmp_path: Path, source: object) -> BackendInstance:
    ctx = BackendContext(driver_name=DRIVER, node_name=NODE, host_root=tmp_path, state_dir=tmp_path / "s",
                         cdi_root=tmp_path / "cdi", backend_name="gpu")
    return BackendInstance("gpu", "gpu", BackendHooks(f"{DRIVER}/gpu", source), ctx)


async def test_failing_health_source_reports_unknown_and_driver_keeps_serving(tmp_path, kroot, engine, caplog):
    """docs/failure-modes.md#health-source-that-cannot-connect:
    the health source's connect always fails. Devices are reported Unknown on the
    kubelet's health stream, the source is retried with back-off, the error is logged once per
    failure streak (not per retry), Prepare/Unprepare keep working, and stopping (SIGTERM)
    while it waits for the daemon is a clean exit."""
    caplog.set_level(logging.DEBUG, logger="dra_framework.health_hub")
    state = HealthState(DRIVER)
    source = NoDaemon()
    hub = HealthHub(state, lambda p: p or NODE, lambda: None, max_backoff=0.05)
    devices = [(None, "gpu-0"), (None, "gpu-1")]
    hub.start([instance(tmp_path, source)], lambda key: devices)
    async with PluginServer(DRIVER, engine, kubelet_root=kroot, health=state, health_resend_interval=0.1) as srv:
        stream = client.watch_health(srv.paths.dra, "v1")
        msg = await asyncio.wait_for(anext(stream), 5)
        while len(msg) < 2:
            msg = await asyncio.wait_for(anext(stream), 5)
        assert [(d.device, d.health) for d in msg] == [("gpu-0", Health.UNKNOWN), ("gpu-1", Health.UNKNOWN)]
        assert "health source failed: xpumd: connection refused" in msg[0].message
        await stream.aclose()
        a = ClaimRef("uid-a", "ns", "a")
        assert (await client.prepare(srv.paths.dra, [a]))["uid-a"].error == ""
        assert await client.unprepare(srv.paths.dra, [a]) == {"uid-a": ""}
        deadline = asyncio.get_running_loop().time() + 5
        while source.attempts < 4:  # first retry after 1 s, then max_backoff
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.05)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR and "health source" in r.getMessage()]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    await asyncio.wait_for(hub.stop(), 5)  # cancelled mid-wait: no exception escapes
    assert hub._tasks == []


async def test_health_source_that_worked_for_a_while_logs_a_new_streak(tmp_path, caplog):
    """docs/failure-modes.md#health-source-that-cannot-connect:
    a source that reported before failing starts a new streak: logged again, and the
    back-off starts over (not stuck at the maximum)."""
    caplog.set_level(logging.DEBUG, logger="dra_framework.health_hub")
    source = NoDaemon()
    source.report_first = True
    state = HealthState(DRIVER)
    hub = HealthHub(state, lambda p: p or NODE, lambda: None, max_backoff=0.05)
    hub.start([instance(tmp_path, source)], lambda key: [(None, "gpu-0")])
    await asyncio.sleep(1.3)
    await hub.stop()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert source.attempts == 2 and len(errors) == 2  # retried after the initial 1 s each time
