"""NVML events → taints: exactly the affected devices, MIG scope, ignore list, recovery."""
from __future__ import annotations

import asyncio
import json

from dra_framework.model import Health, TaintEffect

from dra_backends.nvidia.fake import PRESETS

from nvidia_helpers import Claim, allocated, preset_host

H100 = PRESETS["dgx-h100"]["gpus"]
GPU2 = H100[2]["uuid"]


class Reports:
    def __init__(self) -> None:
        self.items = []
        self.event = asyncio.Event()

    def __call__(self, r) -> None:
        self.items.append(r)
        self.event.set()

    def clear(self) -> None:
        self.items.clear()
        self.event.clear()

    async def wait(self, pred, timeout: float = 5.0):
        async def loop():
            while not pred():
                self.event.clear()
                await self.event.wait()
        await asyncio.wait_for(loop(), timeout)

    def latest(self) -> dict:
        return {r.device: r for r in self.items}


async def start(drv):
    reports = Reports()
    task = asyncio.create_task(drv.hooks.call("dra_watch_health", report=reports))
    return reports, task


async def stop(task):
    task.cancel()
    try:
        await asyncio.wait_for(task, 2)  # prompt: one eventWaitMs at most
    except asyncio.CancelledError:
        pass


async def test_xid_taints_exactly_the_gpu_and_recovers(driver_factory, host):
    drv = driver_factory(host, eventWaitMs=50, xidQuietPeriodSeconds=0.3)
    pool = await drv.discover()
    reports, task = await start(drv)
    try:
        await reports.wait(lambda: len(reports.items) == 8)
        assert all(r.health == Health.HEALTHY and not r.taints for r in reports.items)
        reports.clear()
        drv.backend.nvml.inject_xid(GPU2, 79)
        await reports.wait(lambda: reports.items)
        (r,) = reports.items
        assert r.device == "gpu-0000-52-00-0" and r.health == Health.UNHEALTHY
        assert [(t.key, t.value, t.effect) for t in r.taints] == [("gpu.nvidia.com/xid", "79", TaintEffect.NO_SCHEDULE)]
        assert "XID 79" in r.message
        reports.clear()
        await reports.wait(lambda: reports.items)  # quiet period passed: taint removed
        (r,) = reports.items
        assert r.device == "gpu-0000-52-00-0" and r.taints == [] and r.health == Health.HEALTHY
    finally:
        await stop(task)
    assert len(pool.devices) == 8


async def test_application_xids_are_informational(driver_factory, host):
    drv = driver_factory(host, eventWaitMs=50, additionalXidsToIgnore=[94])
    await drv.discover()
    reports, task = await start(drv)
    try:
        await reports.wait(lambda: len(reports.items) == 8)
        for xid in (13, 31, 43, 45, 68, 109, 94):
            reports.clear()
            drv.backend.nvml.inject_xid(GPU2, xid)
            await reports.wait(lambda: reports.items)
            (r,) = reports.items
            assert r.taints[0].effect == TaintEffect.NONE and r.taints[0].value == str(xid)
            assert r.health == Health.HEALTHY
    finally:
        await stop(task)


async def test_gpu_lost_and_back(driver_factory, host):
    drv = driver_factory(host, eventWaitMs=50)
    await drv.discover()
    reports, task = await start(drv)
    try:
        await reports.wait(lambda: len(reports.items) == 8)
        reports.clear()
        drv.backend.nvml.lose_gpu(GPU2)
        await reports.wait(lambda: reports.items)
        (r,) = reports.items
        assert [t.key for t in r.taints] == ["gpu.nvidia.com/gpu-lost"] and r.health == Health.UNHEALTHY
        reports.clear()
        drv.backend.nvml.recover_gpu(GPU2)
        await reports.wait(lambda: reports.items)
        assert reports.items[0].taints == [] and drv.rediscoveries
    finally:
        await stop(task)


async def test_mig_scoped_xid_and_gpu_wide_xid(driver_factory, host):
    drv = driver_factory(host, eventWaitMs=50, migStrategy="dynamic")
    pool = await drv.discover()
    mig = "gpu-0000-52-00-0-mig-2g20gb-14-2"
    await Claim(drv, "m", [allocated(drv.device(pool, mig))]).prepare()
    gi = drv.backend.nvml.gpu_instances(GPU2)[0].id
    assert gi == 4
    reports, task = await start(drv)
    try:
        await reports.wait(lambda: len(reports.items) == len(pool.devices))
        reports.clear()
        drv.backend.nvml.inject_xid(GPU2, 48, gi_id=gi, ci_id=0)
        await reports.wait(lambda: reports.items)
        assert [(r.device, r.taints[0].value) for r in reports.items] == [(mig, "48")]
        reports.clear()
        drv.backend.nvml.inject_ecc(GPU2)  # GPU-wide: the full GPU and every MIG device of it
        await reports.wait(lambda: reports.items)
        tainted = {r.device for r in reports.items}
        assert tainted == {d.name for d in pool.devices if d.name.startswith("gpu-0000-52-00-0")}
        assert all(any(t.key == "gpu.nvidia.com/ecc" for t in r.taints) for r in reports.items)
    finally:
        await stop(task)


async def test_unmonitored_gpu(driver_factory, tmp_path):
    root = preset_host(tmp_path, "dgx-h100", gpus={5: {"supportsEvents": False}})
    drv = driver_factory(root, eventWaitMs=50)
    await drv.discover()
    reports, task = await start(drv)
    try:
        await reports.wait(lambda: len(reports.items) == 8)
        latest = reports.latest()
        r = latest["gpu-0000-c3-00-0"]
        assert r.health == Health.UNKNOWN
        assert [(t.key, t.effect) for t in r.taints] == [("gpu.nvidia.com/unmonitored", TaintEffect.NONE)]
        assert all(not x.taints for n, x in latest.items() if n != "gpu-0000-c3-00-0")
    finally:
        await stop(task)


async def test_events_injected_by_file(driver_factory, host, tmp_path):
    drv = driver_factory(host, eventWaitMs=50)
    await drv.discover()
    reports, task = await start(drv)
    try:
        await reports.wait(lambda: len(reports.items) == 8)
        reports.clear()
        inject = tmp_path / "state/gpu.nvidia.com/nvidia/fake-nvml/inject"
        inject.mkdir(parents=True, exist_ok=True)
        (inject / "e1.json").write_text(json.dumps({"kind": "xid", "uuid": H100[7]["uuid"], "xid": 119}))
        await reports.wait(lambda: reports.items)
        assert reports.items[0].device == "gpu-0000-df-00-0"
    finally:
        await stop(task)
