"""The daemon's gRPC server transport (dra_framework/kubelet/transport.py): grpclib on the
daemon's loop, called here with grpcio (the reference implementation) as an interop check."""
from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys

import grpc
import pytest

from dra_framework.kubelet._proto import dra_v1_pb2, dra_v1_pb2_grpc
from dra_framework.kubelet.transport import GrpcServer, Status

SERVICE = dra_v1_pb2.DESCRIPTOR.services_by_name["DRAPlugin"]


class SlowServicer:
    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.remaining: list[float | None] = []

    async def NodeUnprepareResources(self, request, context):
        self.remaining.append(context.time_remaining())
        self.started.set()
        await asyncio.sleep(0.5)
        resp = dra_v1_pb2.NodeUnprepareResourcesResponse()
        for c in request.claims:
            resp.claims[c.uid].error = ""
        return resp

    async def NodePrepareResources(self, request, context):
        await context.abort(Status.FAILED_PRECONDITION, "not here")


def _unprepare(uid: str) -> dra_v1_pb2.NodeUnprepareResourcesRequest:
    return dra_v1_pb2.NodeUnprepareResourcesRequest(claims=[dra_v1_pb2.Claim(uid=uid, namespace="ns", name="n")])


async def test_stop_lets_calls_in_flight_finish_and_refuses_new_ones(tmp_path):
    path = str(tmp_path / "dra.sock")
    servicer = SlowServicer()
    server = GrpcServer([(servicer, SERVICE)])
    await server.start(path, 0o600)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    async with grpc.aio.insecure_channel(f"unix:{path}") as ch:
        stub = dra_v1_pb2_grpc.DRAPluginStub(ch)
        in_flight = asyncio.ensure_future(stub.NodeUnprepareResources(_unprepare("a"), timeout=10))
        await servicer.started.wait()
        stopping = asyncio.ensure_future(server.stop(grace=5))
        await asyncio.sleep(0.05)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.NodeUnprepareResources(_unprepare("b"), timeout=5)
        assert refused.value.code() in (grpc.StatusCode.UNAVAILABLE,), refused.value
        reply = await in_flight  # finished within the grace period, not cancelled
        assert list(reply.claims) == ["a"] and reply.claims["a"].error == ""
        await stopping
    assert 9 < servicer.remaining[0] <= 10  # the caller's deadline reached the servicer


async def test_abort_and_unknown_methods_give_grpc_status_codes(tmp_path):
    path = str(tmp_path / "dra.sock")
    server = GrpcServer([(SlowServicer(), SERVICE)])
    await server.start(path, 0o600)
    try:
        async with grpc.aio.insecure_channel(f"unix:{path}") as ch:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await dra_v1_pb2_grpc.DRAPluginStub(ch).NodePrepareResources(
                    dra_v1_pb2.NodePrepareResourcesRequest(), timeout=5)
            assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION and err.value.details() == "not here"
            unknown = ch.unary_unary("/k8s.io.kubelet.pkg.apis.dra.v1.DRAPlugin/NoSuchMethod")
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await unknown(b"", timeout=5)
            assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        await server.stop(grace=None)


def test_the_daemon_does_not_load_grpcio():
    """grpcio's C core holds ~15 MiB of resident memory in the daemon (benchmarks/README.md);
    `dra-framework run` serves with grpclib and must not import grpc on the way."""
    code = ("import sys; from dra_framework import cli, daemon, runtime; from dra_framework.plugins import Registry; "
            "cli.build_parser(); Registry(); print('grpc' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr


class QuickServicer:
    async def NodeUnprepareResources(self, request, context):
        return dra_v1_pb2.NodeUnprepareResourcesResponse()

    async def NodePrepareResources(self, request, context):
        return dra_v1_pb2.NodePrepareResourcesResponse()


async def test_memory_of_closed_streams_is_bounded_on_a_long_lived_connection(tmp_path):
    # The kubelet keeps one connection and opens a stream per call: what the server remembers
    # about closed streams must stop growing (the daemon's RSS stays flat over many cycles).
    import gc

    from h2.connection import H2Connection

    from dra_framework.kubelet.transport import CLOSED_STREAMS_KEPT

    path = str(tmp_path / "dra.sock")
    server = GrpcServer([(QuickServicer(), SERVICE)])
    await server.start(path, 0o600)
    try:
        async with grpc.aio.insecure_channel(f"unix:{path}") as ch:
            stub = dra_v1_pb2_grpc.DRAPluginStub(ch)
            for _ in range(CLOSED_STREAMS_KEPT + 200):
                await stub.NodeUnprepareResources(_unprepare("a"), timeout=10)
            conns = [o for o in gc.get_objects() if isinstance(o, H2Connection) and not o.config.client_side]
            assert conns
            # h2's record of closed streams (private; the bound itself is H2Connection.MAX_CLOSED_STREAMS)
            assert all(len(c._closed_streams) <= CLOSED_STREAMS_KEPT for c in conns), \
                [len(c._closed_streams) for c in conns]
    finally:
        await server.stop(grace=None)
