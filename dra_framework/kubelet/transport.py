"""The gRPC server transport of the kubelet-facing sockets: grpclib (HTTP/2 in Python, on the
daemon's event loop) serving the servicers of :mod:`.servicers`.

Why not grpcio's ``grpc.aio`` server: on the daemon's hot path it hands every call between
its C-core threads and the event loop, and a bare ``grpc.aio`` server holds about 35 MiB more
resident memory and takes 90 ms longer to import than a grpclib one (benchmarks/README.md,
"What was optimised"). The wire is the same gRPC over HTTP/2 on a unix socket; the kubelet's
Go client cannot tell them apart (tests/e2e run the kubelet's own DRA code against it).

Servicer methods keep the shape ``async def Method(self, request, context)``: unary methods
return the response, server-streaming ones are async generators. ``context`` is a
:class:`CallContext` (``time_remaining()``, ``abort()``).
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from typing import Any, AsyncGenerator, Callable, cast

from google.protobuf import message_factory
from google.protobuf.descriptor import ServiceDescriptor
from grpclib.const import Cardinality, Handler, Status
from grpclib.exceptions import GRPCError
from grpclib.server import Server, Stream
from h2.connection import H2Connection

log = logging.getLogger(__name__)

__all__ = ["CallContext", "GrpcServer", "Status", "bind_unix_socket", "call_unary", "service_mapping"]


class CallContext:
    """What a servicer method may ask about its call: the deadline and how to fail it."""

    def __init__(self, stream: Stream) -> None:
        self._stream = stream

    def time_remaining(self) -> float | None:
        """Seconds until the caller's deadline (``grpc-timeout``), None without one."""
        deadline = self._stream.deadline
        return None if deadline is None else deadline.time_remaining()

    async def abort(self, code: Status, details: str) -> None:
        """End the call with gRPC status ``code``; raises (never returns)."""
        raise GRPCError(code, details)


class _Calls:
    """In-flight calls of one server, so that stop can let them finish (grpclib's close
    cancels them) and refuse new ones meanwhile."""

    def __init__(self) -> None:
        self.count = 0
        self.closing = False
        self._idle = asyncio.Event()
        self._idle.set()

    def enter(self) -> None:
        if self.closing:  # the kubelet retries UNAVAILABLE with the next instance
            raise GRPCError(Status.UNAVAILABLE, "the DRA driver is shutting down")
        self.count += 1
        self._idle.clear()

    def exit(self) -> None:
        self.count -= 1
        if self.count == 0:
            self._idle.set()

    async def wait_idle(self) -> None:
        await self._idle.wait()


def _unary(fn: Callable[..., Any], calls: _Calls) -> Callable[[Stream], Any]:
    async def handle(stream: Stream) -> None:
        calls.enter()
        try:
            request = await stream.recv_message()
            reply = await fn(request, CallContext(stream))
            await stream.send_message(reply)
        finally:
            calls.exit()
    return handle


def _server_stream(fn: Callable[..., AsyncGenerator[Any, None]], calls: _Calls) -> Callable[[Stream], Any]:
    async def handle(stream: Stream) -> None:
        request = await stream.recv_message()  # long-lived: not counted as an in-flight call
        replies = fn(request, CallContext(stream))
        try:
            async for reply in replies:
                await stream.send_message(reply)
        finally:
            await replies.aclose()
    return handle


def service_mapping(servicer: object, service: ServiceDescriptor, calls: _Calls | None = None) -> dict[str, Handler]:
    """grpclib's method table for ``servicer`` implementing ``service`` (a protobuf service
    descriptor): ``/<package>.<Service>/<Method>`` → handler. Methods the servicer lacks are
    left out (the caller gets UNIMPLEMENTED). Only unary and server-streaming methods exist
    in the kubelet's DRA and registration APIs."""
    calls = calls or _Calls()
    mapping: dict[str, Handler] = {}
    for method in service.methods:
        fn = getattr(servicer, method.name, None)
        if fn is None:
            continue
        request = message_factory.GetMessageClass(method.input_type)
        reply = message_factory.GetMessageClass(method.output_type)
        if method.server_streaming:
            mapping[f"/{service.full_name}/{method.name}"] = Handler(
                _server_stream(fn, calls), Cardinality.UNARY_STREAM, request, reply)
        else:
            mapping[f"/{service.full_name}/{method.name}"] = Handler(
                _unary(fn, calls), Cardinality.UNARY_UNARY, request, reply)
    return mapping


class _CorkedTransport:
    """A transport that sends everything written during one event-loop iteration in one write.
    grpclib writes a reply's HEADERS, DATA and trailers (and its window updates) one by one;
    sent together they cost one system call and one wake-up of the kubelet, not three."""

    def __init__(self, transport: Any) -> None:
        self._transport = transport
        self._buffer: list[bytes] = []
        self._loop = asyncio.get_running_loop()

    def write(self, data: bytes) -> None:
        if not data:
            return
        if not self._buffer:
            self._loop.call_soon(self._flush)
        self._buffer.append(data)

    def _flush(self) -> None:
        if self._buffer:
            data = b"".join(self._buffer)
            self._buffer.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


#: Closed streams an HTTP/2 connection remembers, so that a frame still in flight on a stream it
#: reset is answered with RST_STREAM instead of ending the connection. h2 keeps 65,536 per
#: connection (7.5 MiB): the kubelet keeps one connection open, and with two streams per claim
#: cycle the daemon's memory would grow for 32,768 cycles. Frames in flight arrive within a round
#: trip, while at most a few dozen calls run at once.
CLOSED_STREAMS_KEPT = 1024


class _Server(Server):
    def _protocol_factory(self) -> Any:
        H2Connection.MAX_CLOSED_STREAMS = min(H2Connection.MAX_CLOSED_STREAMS, CLOSED_STREAMS_KEPT)
        protocol = super()._protocol_factory()
        made = protocol.connection_made
        # setattr: mypy refuses assigning to a method; the instance attribute is what asyncio calls
        setattr(protocol, "connection_made", lambda transport: made(cast(Any, _CorkedTransport(transport))))  # noqa: B010
        return protocol


class _Service:
    def __init__(self, mapping: dict[str, Handler]) -> None:
        self._mapping = mapping

    def __mapping__(self) -> dict[str, Handler]:
        return self._mapping


def bind_unix_socket(path: str, mode: int) -> socket.socket:
    """A listening unix socket at ``path`` with ``mode``: bound under a tightened umask, so
    there is no moment with a wider mode (docs/operations.md, "File modes"), then chmod'ed.
    Raises OSError."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        old = os.umask(0o777 & ~mode)
        try:
            sock.bind(path)
        finally:
            os.umask(old)
        os.chmod(path, mode)
        sock.listen(128)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class GrpcServer:
    """One gRPC server on one unix socket.

    services: (servicer, protobuf service descriptor) pairs.
    """

    def __init__(self, services: list[tuple[object, ServiceDescriptor]]) -> None:
        self._calls = _Calls()
        mapping: dict[str, Handler] = {}
        for servicer, descriptor in services:
            mapping.update(service_mapping(servicer, descriptor, self._calls))
        self._server = _Server([_Service(mapping)])
        self._started = False

    async def start(self, path: str, mode: int) -> None:
        """Listen on ``path`` (see :func:`bind_unix_socket`). Raises OSError."""
        sock = bind_unix_socket(path, mode)
        try:
            await self._server.start(sock=sock)  # create_server accepts a bound unix socket
        except BaseException:
            sock.close()
            raise
        self._started = True

    async def stop(self, grace: float | None) -> None:
        """Refuse new calls (UNAVAILABLE), let in-flight unary calls finish within ``grace``
        seconds (None: cancel them now), then close every connection; streams are cancelled."""
        if not self._started:
            return
        self._started = False
        self._calls.closing = True
        if grace and self._calls.count:
            t0 = time.monotonic()
            try:
                await asyncio.wait_for(self._calls.wait_idle(), grace)
            except TimeoutError:
                log.warning("%d call(s) still running after %.1fs of grace: cancelled", self._calls.count,
                            time.monotonic() - t0)
        self._server.close()
        await self._server.wait_closed()


async def call_unary(path: str, service: ServiceDescriptor, method: str, request: Any, timeout: float) -> Any:
    """Call unary ``method`` of ``service`` on the unix socket ``path`` (the daemon checking its
    own sockets; the CLI's client is :mod:`.client`). Raises grpclib's GRPCError, OSError, or
    TimeoutError after ``timeout`` seconds."""
    from grpclib.client import Channel, UnaryUnaryMethod

    m = service.methods_by_name[method]
    channel = Channel(path=path)
    try:
        call = UnaryUnaryMethod(channel, f"/{service.full_name}/{method}", message_factory.GetMessageClass(m.input_type),
                                message_factory.GetMessageClass(m.output_type))
        return await call(request, timeout=timeout)
    finally:
        channel.close()
