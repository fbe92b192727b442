"""MPS control daemon through the hooks, with the recording executor's stand-in daemon (a real
process): started by the first MPS share, shared by the second, stopped after the last; per-share
pinned-memory limits; a killed daemon taints the device and fails new prepares until its claims
are gone; a new backend instance (driver restart) finds the running daemon and leaves it alone."""
from __future__ import annotations

import asyncio
import os
import signal

import pytest

from dra_framework.api import Taint
from dra_framework.model import AllocatedDevice

from dra_backends.nvidia.backend import MPS_DEAD_TAINT
from dra_backends.nvidia.config import GpuConfig
from dra_backends.nvidia.fake import PRESETS
from dra_backends.nvidia.mps import find_daemon

from nvidia_helpers import Claim

GPU = "gpu-0000-1b-00-0"
UUID = PRESETS["dgx-h100"]["gpus"][0]["uuid"]
MPS = GpuConfig.model_validate({"sharing": {"strategy": "MPS", "mpsConfig": {
    "defaultActiveThreadPercentage": 50, "defaultPinnedDeviceMemoryLimit": "10Gi"}}})


def share(device, share_id: str, memory: str = "40Gi", configs=(MPS,)) -> AllocatedDevice:
    return AllocatedDevice(request="gpu", pool="node-1", device=device, share_id=share_id,
                           consumed_capacity={"memory": memory}, configs=tuple(configs))


@pytest.fixture
def drv(driver_factory, host):
    d = driver_factory(host, consumableShares="memory", migStrategy="none")
    yield d
    for pid in find_daemon(GPU):  # never leave a stand-in daemon behind
        os.kill(pid, signal.SIGKILL)


async def test_daemon_shared_by_two_shares_and_stopped_after_the_last(drv):
    pool = await drv.discover()
    gpu = drv.device(pool, GPU)
    assert gpu.allow_multiple_allocations
    a = Claim(drv, "uid-a", [share(gpu, "11111111-aaaa-4aaa-8aaa-000000000001")])
    b = Claim(drv, "uid-b", [share(gpu, "22222222-bbbb-4bbb-8bbb-000000000002", "20Gi")])
    res = await a.prepare()
    pids = find_daemon(GPU)
    assert len(pids) == 1
    cmds = drv.backend.executor.commands
    assert ["nvidia-smi", "-i", UUID, "-c", "EXCLUSIVE_PROCESS"] in cmds
    assert ["nvidia-cuda-mps-control", "-f"] in cmds
    assert ["nvidia-cuda-mps-control", "<<set_default_active_thread_percentage 50\n"
            "set_default_device_pinned_mem_limit 0 10240M"] in cmds
    edits = res.devices[GPU].edits
    assert edits.env["CUDA_MPS_PIPE_DIRECTORY"] == "/tmp/nvidia-mps"
    assert edits.env["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] == "0=40960M"  # the share's own memory
    assert edits.env["NVIDIA_DRA_SHARE_GPU_0000_1B_00_0"] == "11111111-aaaa-4aaa-8aaa-000000000001"
    mounts = {m.container_path: m.host_path for m in edits.mounts}
    assert mounts == {"/tmp/nvidia-mps": f"/run/nvidia-dra/mps/{GPU}/pipe", "/dev/shm": f"/run/nvidia-dra/mps/{GPU}/shm"}
    assert a.journal[f"mps/{GPU}#11111111-aaaa-4aaa-8aaa-000000000001"]["step"] == "ready"

    res_b = await b.prepare()
    assert find_daemon(GPU) == pids, "the second share joins the running daemon"
    assert res_b.devices[GPU].edits.env["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] == "0=20480M"
    assert cmds.count(["nvidia-cuda-mps-control", "-f"]) == 1

    await a.unprepare()
    assert find_daemon(GPU) == pids, "b still uses it"
    await b.unprepare()
    for _ in range(100):
        if not find_daemon(GPU):
            break
        await asyncio.sleep(0.05)
    assert not find_daemon(GPU)
    assert cmds[-1] == ["nvidia-smi", "-i", UUID, "-c", "DEFAULT"]
    assert not (drv.backend.host_root / f"run/nvidia-dra/mps/{GPU}").exists()
    assert drv.backend.mps.read() == {}


async def test_share_without_mps_refused_on_an_mps_gpu(drv):
    pool = await drv.discover()
    gpu = drv.device(pool, GPU)
    a = Claim(drv, "uid-a", [share(gpu, "11111111-aaaa-4aaa-8aaa-000000000001")])
    await a.prepare()
    plain = Claim(drv, "uid-p", [share(gpu, "33333333-cccc-4ccc-8ccc-000000000003", configs=())])
    with pytest.raises(RuntimeError, match="its MPS control daemon .* serves claim uid-a"):
        await plain.prepare()
    await plain.unprepare()  # the framework's rollback: nothing of uid-a is touched
    assert find_daemon(GPU)
    await a.unprepare()


async def test_dead_daemon_taints_and_fails_new_prepares(drv):
    drv.backend.o.mps_watch_seconds = 0.05
    pool = await drv.discover()
    gpu = drv.device(pool, GPU)
    a = Claim(drv, "uid-a", [share(gpu, "11111111-aaaa-4aaa-8aaa-000000000001")])
    await a.prepare()
    reports = []
    watch = asyncio.create_task(drv.backend._watch_mps(reports.append))
    try:
        for pid in find_daemon(GPU):
            os.kill(pid, signal.SIGKILL)
        for _ in range(200):
            if GPU in drv.backend.mps_dead:
                break
            await asyncio.sleep(0.05)
        taints = [t for r in reports if r.device == GPU for t in r.taints]
        assert Taint(MPS_DEAD_TAINT, "dead") in taints, reports
        assert "is not running" in reports[-1].message
        b = Claim(drv, "uid-b", [share(gpu, "22222222-bbbb-4bbb-8bbb-000000000002")])
        with pytest.raises(RuntimeError, match=f"tainted {MPS_DEAD_TAINT}: MPS control daemon of {GPU} is not running"):
            await b.prepare()
        await a.unprepare()  # the last claim goes: the record is dropped, the taint lifted
        for _ in range(200):
            if GPU not in drv.backend.mps_dead:
                break
            await asyncio.sleep(0.05)
        assert reports[-1].device == GPU and reports[-1].taints == []
        await b.prepare()  # MPS works again on the device: a fresh daemon
        assert find_daemon(GPU)
        await b.unprepare()
    finally:
        watch.cancel()


async def test_restarted_backend_keeps_a_daemon_in_use(drv, driver_factory, host):
    pool = await drv.discover()
    a = Claim(drv, "uid-a", [share(drv.device(pool, GPU), "11111111-aaaa-4aaa-8aaa-000000000001")])
    await a.prepare()
    pids = find_daemon(GPU)
    again = driver_factory(host, consumableShares="memory", migStrategy="none")  # same state dir
    await again.hooks.call("dra_reconcile_partitions", owned=[])  # start-up clean-up
    assert find_daemon(GPU) == pids
    await a.unprepare(again)
    for _ in range(100):
        if not find_daemon(GPU):
            break
        await asyncio.sleep(0.05)
    assert not find_daemon(GPU)
