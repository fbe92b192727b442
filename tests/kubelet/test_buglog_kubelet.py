"""Scenarios from public DRA driver bug reports for the kubelet-facing layer, over real unix
sockets with the kubelet-like client; each test links its report (docs/failure-modes.md)."""
from __future__ import annotations

import asyncio
import os
import threading
import time

import grpc
import pytest

from dra_framework.kubelet import ClaimRef, Health, HealthState, PluginServer, client
from dra_framework.kubelet import server as server_mod
from dra_framework.kubelet._proto import dra_v1_pb2, dra_v1_pb2_grpc, dra_v1beta1_pb2, dra_v1beta1_pb2_grpc
from dra_framework.kubelet._proto import pluginregistration_v1_pb2 as reg_pb2

from .conftest import DRIVER, FakeEngine

A = ClaimRef(uid="uid-a", namespace="ns", name="a")


class BlockingEngine(FakeEngine):
    """Prepare blocks until ``release`` (a slow backend)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.entered = asyncio.Event()

    async def prepare(self, claims):
        self.entered.set()
        await self.release.wait()
        return await super().prepare(claims)


async def test_get_info_fast_and_endpoint_listening_before_registration_appears(kroot):
    """docs/failure-modes.md#slow-or-failing-getinfo:
    GetInfo answers at once from static data, also while the engine is stuck in a
    backend call; the DRA socket it advertises already accepts connections when the
    registration socket appears; a failed registration does not stop the server, and the
    kubelet's retry registers it."""
    engine = BlockingEngine()
    srv = PluginServer(DRIVER, engine, kubelet_root=kroot)
    seen: dict[str, bool] = {}

    def watch():  # the kubelet's plugin watcher: react as soon as the file appears
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not os.path.exists(srv.paths.registration):
            time.sleep(0.0005)
        seen["dra_exists"] = os.path.exists(srv.paths.dra)
        import socket
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(srv.paths.dra)
            seen["dra_accepts"] = True
        except OSError:
            seen["dra_accepts"] = False
        finally:
            s.close()

    t = threading.Thread(target=watch)
    t.start()
    await srv.start()
    try:
        await asyncio.to_thread(t.join)
        assert seen == {"dra_exists": True, "dra_accepts": True}
        busy = asyncio.ensure_future(client.prepare(srv.paths.dra, [A]))
        await asyncio.wait_for(engine.entered.wait(), 5)
        t0 = time.monotonic()
        info = await client.get_info(srv.paths.registration)  # the kubelet's 1 s limit
        assert time.monotonic() - t0 < 0.5 and info.endpoint == srv.paths.dra
        # first registration attempt fails (kubelet side), then the retry succeeds
        await client.notify_status(srv.paths.registration, False, "GetInfo timed out")
        assert not srv.registered
        res = await client.register_check(kroot, DRIVER, notify=True)
        assert res.notified and srv.registered
        engine.release.set()
        assert (await busy)["uid-a"].error == ""
    finally:
        engine.release.set()
        await srv.stop()


async def test_call_after_client_idle_timeout_on_same_channel(kroot, engine):
    """docs/failure-modes.md#idle-connection-closed-by-the-kubelet:
    the kubelet's gRPC client goes idle (connection closed by its idle timeout) and then
    calls again without any process restart; the server serves the re-opened connection."""
    async with PluginServer(DRIVER, engine, kubelet_root=kroot) as srv:
        opts = [("grpc.client_idle_timeout_ms", 200)]
        async with grpc.aio.insecure_channel(f"unix:{srv.paths.dra}", options=opts) as ch:
            stub = dra_v1_pb2_grpc.DRAPluginStub(ch)
            req = dra_v1_pb2.NodePrepareResourcesRequest(claims=[dra_v1_pb2.Claim(uid="u", namespace="n", name="x")])
            assert list((await stub.NodePrepareResources(req, timeout=5)).claims) == ["u"]
            deadline = time.monotonic() + 10
            while ch.get_state() != grpc.ChannelConnectivity.IDLE:  # the idle timeout fired
                assert time.monotonic() < deadline, "channel never went idle"
                await asyncio.sleep(0.05)
            resp = await asyncio.wait_for(stub.NodePrepareResources(req, timeout=5), 10)
            assert list(resp.claims) == ["u"]
        assert len(engine.calls) == 2


@pytest.mark.parametrize("kubelet_accepts", [("v1beta1.DRAPlugin",), ("v1.DRAPlugin",),
                                             ("v1.DRAPlugin", "v1beta1.DRAPlugin")])
async def test_kubelets_of_the_skew_window_find_a_service(kroot, engine, kubelet_accepts):
    """docs/failure-modes.md#both-dra-api-versions:
    kubelets that accept only v1beta1, only v1, or both all find a fully qualified
    service name in supported_versions (never a bare "1.0.0"), pick the first one they know
    in the plugin's order, and get the same answers through it."""
    async with PluginServer(DRIVER, engine, kubelet_root=kroot) as srv:
        info = await client.get_info(srv.paths.registration)
        assert all("." in v and v.split(".", 1)[0].startswith("v") for v in info.supported_versions)
        picked = next(v for v in info.supported_versions if v in kubelet_accepts)
        version = picked.split(".", 1)[0]
        assert picked == ("v1.DRAPlugin" if "v1.DRAPlugin" in kubelet_accepts else "v1beta1.DRAPlugin")
        pb, grpc_mod = (dra_v1_pb2, dra_v1_pb2_grpc) if version == "v1" else (dra_v1beta1_pb2, dra_v1beta1_pb2_grpc)
        async with grpc.aio.insecure_channel(f"unix:{info.endpoint}") as ch:
            resp = await grpc_mod.DRAPluginStub(ch).NodePrepareResources(
                pb.NodePrepareResourcesRequest(claims=[pb.Claim(uid="uid-a", namespace="ns", name="a")]), timeout=5)
        got = resp.claims["uid-a"]
        assert got.error == "" and [d.device_name for d in got.devices] == ["dev-a", "shared"]
        assert list(got.devices[0].cdi_device_ids) == ["example.com/gpu=uid-a"]


async def test_two_overlapping_instances_stream_full_snapshots_and_stop_stream_before_deregister(
        kroot, engine, monkeypatch):
    """https://github.com/kubernetes/kubernetes/issues/140818:
    two instances of one driver overlap during a rolling update. Each stream message is
    a complete snapshot of the devices that instance owns; the instance going away ends its
    health stream before its registration socket disappears, and the other keeps streaming."""
    states = []
    servers = []
    for i, health in enumerate((Health.HEALTHY, Health.UNHEALTHY)):
        st = HealthState(DRIVER)
        st.set("node-a", "gpu-0", health, at=100)
        st.set("node-a", "gpu-1", Health.HEALTHY, at=100)
        states.append(st)
        srv = PluginServer(DRIVER, engine, kubelet_root=kroot, pod_uid=f"pod-{i}", health=st,
                           health_resend_interval=0.2)
        await srv.start()
        servers.append(srv)
    old, new = servers
    at_removal: dict[str, int] = {}
    real_remove = server_mod._remove_quietly

    def remove(path):
        if path == old.paths.registration:
            at_removal["subscribers"] = states[0].subscriber_count
        real_remove(path)
    monkeypatch.setattr(server_mod, "_remove_quietly", remove)

    streams = [client.watch_health(s.paths.dra, "v1") for s in servers]
    try:
        first = [await anext(s) for s in streams]
        assert [[(d.device, d.health) for d in m] for m in first] == [
            [("gpu-0", Health.HEALTHY), ("gpu-1", Health.HEALTHY)],
            [("gpu-0", Health.UNHEALTHY), ("gpu-1", Health.HEALTHY)]]
        states[1].set("node-a", "gpu-1", Health.UNHEALTHY)  # a change: still the full list
        msg = await asyncio.wait_for(anext(streams[1]), 5)
        while [d.health for d in msg] != [Health.UNHEALTHY, Health.UNHEALTHY]:
            msg = await asyncio.wait_for(anext(streams[1]), 5)
        assert [d.device for d in msg] == ["gpu-0", "gpu-1"]

        async def drain(s):
            async for _ in s:
                pass
        ended = asyncio.ensure_future(drain(streams[0]))
        await old.stop()
        await asyncio.wait_for(ended, 5)  # a clean end, no error
        assert at_removal == {"subscribers": 0}
        assert os.path.exists(new.paths.registration)
        assert len(await asyncio.wait_for(anext(streams[1]), 5)) == 2
    finally:
        for s in streams:
            await s.aclose()
        for s in servers:
            await s.stop()


async def test_new_pod_instance_after_sigkill_leaves_one_registration(kroot, engine):
    """docs/failure-modes.md#stale-sockets-after-a-kill-or-a-rolling-update:
    a rolling-update instance (per-pod socket names) started after a SIGKILLed one
    leaves exactly one registration socket for the driver: the dead one's sockets are gone."""
    import socket as so
    dead = PluginServer(DRIVER, engine, kubelet_root=kroot, pod_uid="pod-old").paths
    os.makedirs(dead.plugin_dir, exist_ok=True)
    for p in (dead.registration, dead.dra):  # what SIGKILL leaves behind
        s = so.socket(so.AF_UNIX)
        s.bind(p)
        s.close()
    async with PluginServer(DRIVER, engine, kubelet_root=kroot, pod_uid="pod-new") as srv:
        regs = [n for n in os.listdir(srv.paths.registry_dir) if n.startswith(DRIVER)]
        assert regs == [os.path.basename(srv.paths.registration)]
        assert [n for n in os.listdir(srv.paths.plugin_dir) if n.endswith(".sock")] == [os.path.basename(srv.paths.dra)]
        info = await client.get_info(srv.paths.registration)
        assert isinstance(info, reg_pb2.PluginInfo) and info.endpoint == srv.paths.dra
    assert [n for n in os.listdir(srv.paths.registry_dir) if n.startswith(DRIVER)] == []


async def test_rejected_registration_shows_in_readiness_not_exit(kroot, engine):
    """docs/failure-modes.md#slow-or-failing-getinfo/docs/failure-modes.md#registration-never-happens-or-is-rejected:
    a rejected registration does not stop the driver; its readiness says why
    (quoting the kubelet), and clears once the kubelet's retry registers it."""
    from dra_framework.config import BackendConfig, DriverConfig, Settings
    from dra_framework.runtime import DriverRuntime

    cfg = DriverConfig(name=DRIVER, backends=[BackendConfig(name="example")])
    rt = DriverRuntime(Settings(nodeName="n1", kubeletRootDir=kroot, drivers=[cfg]), 0, cfg, None, None, None, None)
    async with PluginServer(DRIVER, engine, kubelet_root=kroot) as srv:
        rt.server = srv
        assert await rt.readiness() == []
        await client.notify_status(srv.paths.registration, False, "unsupported version")
        problems = await rt.readiness()
        assert problems == [f"driver {DRIVER}: registration rejected by the kubelet: unsupported version"]
        assert (await client.prepare(srv.paths.dra, [A]))["uid-a"].error == ""  # still serving
        await client.notify_status(srv.paths.registration, True)
        assert await rt.readiness() == []
