"""PluginServer over real unix sockets, driven by the kubelet-like client."""
from __future__ import annotations

import asyncio
import logging
import os
import socket

import grpc
import pytest

from dra_framework.kubelet import ClaimRef, Health, HealthState, PluginServer, RegistrationError, client
from dra_framework.kubelet._proto import dra_v1_pb2, dra_v1_pb2_grpc
from dra_framework.kubelet._proto import pluginregistration_v1_pb2 as reg_pb2
from dra_framework.kubelet._proto import pluginregistration_v1_pb2_grpc as reg_grpc

from .conftest import DRIVER

A = ClaimRef(uid="uid-a", namespace="ns", name="a")
B = ClaimRef(uid="uid-b", namespace="ns", name="b")
C = ClaimRef(uid="uid-c", namespace="ns", name="c")


@pytest.fixture
async def server(kroot, engine):
    srv = PluginServer(DRIVER, engine, kubelet_root=kroot)
    await srv.start()
    yield srv
    await srv.stop()


@pytest.fixture
async def health_server(kroot, engine):
    state = HealthState(DRIVER, default_timeout_seconds=20)
    state.set("node-a", "gpu-0", Health.HEALTHY, at=1000)
    state.set("node-a", "gpu-1", Health.UNHEALTHY, "ECC errors", at=1001, timeout_seconds=5)
    srv = PluginServer(DRIVER, engine, kubelet_root=kroot, health=state, health_resend_interval=0.2)
    await srv.start()
    yield srv
    await srv.stop()


async def get_info(path):
    async with grpc.aio.insecure_channel(f"unix:{path}") as ch:
        return await reg_grpc.RegistrationStub(ch).GetInfo(reg_pb2.InfoRequest(), timeout=1)


async def test_get_info_without_health(server):
    info = await get_info(server.paths.registration)
    assert (info.type, info.name, info.endpoint) == ("DRAPlugin", DRIVER, server.paths.dra)
    assert list(info.supported_versions) == ["v1.DRAPlugin", "v1beta1.DRAPlugin"]
    assert server.contacted


async def test_get_info_with_health(health_server):
    info = await get_info(health_server.paths.registration)
    assert list(info.supported_versions) == ["v1.DRAPlugin", "v1beta1.DRAPlugin",
                                             "v1.DRAResourceHealth", "v1alpha1.DRAResourceHealth"]


async def test_register_check_and_notify(server, kroot):
    assert server.registration_status is None
    res = await client.register_check(kroot, DRIVER, notify=True)
    assert res.endpoint == server.paths.dra and res.endpoint_reachable and res.notified
    assert (res.dra_version, res.health_service) == ("v1", None)
    assert res.warnings == []
    assert server.registered
    assert (await server.wait_registered(0.1)).registered


async def test_register_check_rolling_update(kroot, engine):
    async with PluginServer(DRIVER, engine, kubelet_root=kroot, pod_uid="pod-1") as srv:
        assert os.path.basename(srv.paths.dra) == "dra-pod-1.sock"
        # Discovery by scanning the registry dir, and by exact pod UID.
        for uid in (None, "pod-1"):
            res = await client.register_check(kroot, DRIVER, pod_uid=uid)
            assert res.registration_socket == srv.paths.registration


async def test_registration_rejected(server):
    with pytest.raises(RegistrationError, match="never contacted.*plugins_registry"):
        await server.wait_registered(0.05)
    await client.notify_status(server.paths.registration, False, "unsupported version")
    st = server.registration_status
    assert (st.registered, st.error) == (False, "unsupported version")
    with pytest.raises(RegistrationError, match="rejected .*'unsupported version'"):
        await server.wait_registered(0.05)
    # Not final: a later success (kubelet retry) is seen by a waiter.
    waiter = asyncio.create_task(server.wait_registered(5))
    await asyncio.sleep(0.05)
    await client.notify_status(server.paths.registration, True)
    assert (await waiter).registered


async def test_validation_like_kubelet():
    ok = reg_pb2.PluginInfo(type="DRAPlugin", name=DRIVER, endpoint="",
                            supported_versions=["v1alpha3.NodeService", "v1beta1.DRAPlugin"])
    res = client.validate_info(ok, DRIVER, "/reg.sock")
    assert (res.endpoint, res.dra_version) == ("/reg.sock", "v1beta1") and res.warnings
    for bad in (reg_pb2.PluginInfo(type="CSIPlugin", name=DRIVER, supported_versions=["v1.DRAPlugin"]),
                reg_pb2.PluginInfo(type="DRAPlugin", name="x", supported_versions=["v1.DRAPlugin"]),
                reg_pb2.PluginInfo(type="DRAPlugin", name=DRIVER, supported_versions=[]),
                reg_pb2.PluginInfo(type="DRAPlugin", name=DRIVER, supported_versions=["1.0.0"])):
        with pytest.raises(client.KubeletCheckError):
            client.validate_info(bad, DRIVER, "/reg.sock")


async def test_prepare_v1_and_v1beta1_agree(server):
    v1 = await client.prepare(server.paths.dra, [A, B], "v1")
    beta = await client.prepare(server.paths.dra, [A, B], "v1beta1")
    assert set(v1) == {"uid-a", "uid-b"}
    dev = v1["uid-a"].devices[0]
    assert dev.requests == ["req", "other"]  # subrequest cut, de-duplicated
    assert (dev.pool, dev.device, dev.cdi_device_ids) == ("node-a", "dev-a", ["example.com/gpu=uid-a"])
    assert dev.share_id == "share-uid-a" and v1["uid-a"].devices[1].share_id is None
    # v1beta1 drops share_id, everything else is identical.
    for outcome in v1.values():
        for d in outcome.devices:
            d.share_id = None
    assert beta == v1
    assert await client.unprepare(server.paths.dra, [A, B], "v1") == \
        await client.unprepare(server.paths.dra, [A, B], "v1beta1") == {"uid-a": "", "uid-b": ""}


@pytest.mark.parametrize("version", ["v1", "v1beta1"])
async def test_entry_for_every_uid(server, engine, version):
    engine.omit, engine.fail, engine.extra = {"uid-b"}, {"uid-c"}, True
    res = await client.prepare(server.paths.dra, [A, B, C], version)
    assert set(res) == {"uid-a", "uid-b", "uid-c"}  # extra UID dropped
    assert res["uid-a"].error == "" and res["uid-a"].devices
    assert "no result for claim ns/b" in res["uid-b"].error and not res["uid-b"].devices
    assert res["uid-c"].error == "cannot prepare c"
    un = await client.unprepare(server.paths.dra, [A, B, C], version)
    assert un["uid-a"] == "" and "no result" in un["uid-b"] and un["uid-c"] == "busy c"
    assert set(un) == {"uid-a", "uid-b", "uid-c"}


async def test_engine_exception_becomes_claim_error(server, engine):
    engine.raise_exc = RuntimeError("backend exploded")
    res = await client.prepare(server.paths.dra, [A, B])
    assert {u: o.error for u, o in res.items()} == {"uid-a": "backend exploded", "uid-b": "backend exploded"}
    assert await client.unprepare(server.paths.dra, [A]) == {"uid-a": "backend exploded"}


async def test_reconnect_after_client_close(server, engine):
    for _ in range(3):  # the kubelet may drop and re-dial its connection (docs/failure-modes.md#idle-connection-closed-by-the-kubelet)
        ch = grpc.aio.insecure_channel(f"unix:{server.paths.dra}")
        resp = await dra_v1_pb2_grpc.DRAPluginStub(ch).NodePrepareResources(
            dra_v1_pb2.NodePrepareResourcesRequest(claims=[dra_v1_pb2.Claim(uid="u", namespace="n", name="x")]),
            timeout=5)
        assert list(resp.claims) == ["u"]
        await ch.close()
    assert len(engine.calls) == 3


async def test_stop_removes_sockets_and_restart(kroot, engine):
    srv = PluginServer(DRIVER, engine, kubelet_root=kroot)
    await srv.start()
    assert os.path.exists(srv.paths.registration) and os.path.exists(srv.paths.dra)
    await srv.stop()
    assert not os.path.exists(srv.paths.registration) and not os.path.exists(srv.paths.dra)
    await srv.stop()  # idempotent
    await srv.start()
    assert (await client.prepare(srv.paths.dra, [A]))["uid-a"].error == ""
    await srv.stop()


async def test_stale_sockets_removed_on_start(kroot, engine):
    srv = PluginServer(DRIVER, engine, kubelet_root=kroot)
    os.makedirs(srv.paths.plugin_dir)
    for path in (srv.paths.registration, srv.paths.dra):  # left by a SIGKILLed instance
        s = socket.socket(socket.AF_UNIX)
        s.bind(path)
        s.close()
    async with srv:
        assert (await get_info(srv.paths.registration)).name == DRIVER


async def test_missing_registry_dir_is_an_error(kroot, engine):
    os.rmdir(os.path.join(kroot, "plugins_registry"))
    with pytest.raises(FileNotFoundError, match="plugins_registry"):
        await PluginServer(DRIVER, engine, kubelet_root=kroot).start()


# --- health --------------------------------------------------------------------

@pytest.mark.parametrize("version", ["v1", "v1alpha1"])
async def test_health_full_list_on_connect_and_resend(health_server, version):
    msgs = []
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    async for devices in client.watch_health(health_server.paths.dra, version):
        msgs.append((loop.time() - t0, devices))
        if len(msgs) == 3:
            break
    first = msgs[0][1]
    assert [(d.pool, d.device, d.health, d.message, d.last_updated, d.timeout_seconds) for d in first] == [
        ("node-a", "gpu-0", Health.HEALTHY, "", 1000.0, 20),
        ("node-a", "gpu-1", Health.UNHEALTHY, "ECC errors", 1001.0, 5),
    ]
    assert msgs[1][1] == first and msgs[2][1] == first  # periodic full resend
    assert msgs[2][0] >= 0.35  # two resend intervals of 0.2 s


async def test_health_change_is_pushed(kroot, engine):
    state = HealthState(DRIVER)
    state.set("node-a", "gpu-0", Health.HEALTHY)
    # A 60 s resend interval: any second message within the test is a push.
    async with PluginServer(DRIVER, engine, kubelet_root=kroot, health=state, health_resend_interval=60) as srv:
        stream = client.watch_health(srv.paths.dra, "v1")
        assert len(await anext(stream)) == 1
        state.set("node-a", "gpu-2", "Unhealthy", "x" * 2000)
        nxt = await asyncio.wait_for(anext(stream), 5)
        assert len(nxt) == 2
        assert nxt[1].health is Health.UNHEALTHY and len(nxt[1].message) == 1024 and nxt[1].message.endswith("...")
        await stream.aclose()


async def test_health_stream_ends_on_stop(health_server):
    stream = client.watch_health(health_server.paths.dra, "v1")
    await anext(stream)

    async def drain():
        async for _ in stream:
            pass

    task = asyncio.create_task(drain())
    await asyncio.sleep(0.05)
    await health_server.stop()
    await asyncio.wait_for(task, 2)  # clean end of stream, no error
    assert health_server.health.subscriber_count == 0


@pytest.mark.parametrize("version", ["v1", "v1alpha1"])
async def test_health_unimplemented_without_source(server, version, caplog):
    caplog.set_level(logging.DEBUG, logger="dra_framework.kubelet")
    for _ in range(3):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for _ in client.watch_health(server.paths.dra, version):
                pass
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    refusals = [r for r in caplog.records if "health watch refused" in r.getMessage()]
    assert len(refusals) == 1  # no log line per kubelet retry (docs/failure-modes.md#health-service-advertised-but-not-implemented)
    # DRA calls still work on the same socket.
    assert (await client.prepare(server.paths.dra, [A]))["uid-a"].error == ""


async def test_engine_returning_garbage(server, engine):
    async def bad(claims):
        return None
    engine.prepare = bad
    res = await client.prepare(server.paths.dra, [A])
    assert "engine prepare returned NoneType" in res["uid-a"].error
