"""The claim GET of the prepare path over kept-alive HTTP/1.1 connections (docs/operations.md,
"Claim fetch").

Every NodePrepareResources fetches the ResourceClaim fresh from the API server (never a cache: the
kubelet's claim UID must match what the API server has now). Through lightkube that GET costs
more CPU than the rest of the prepare: an HTTP/1.1 client written in Python over a TLS stream
wrapped in Python, a typed model built from the JSON and converted back into a dict. Here the GET
runs on the daemon's event loop: TLS in the loop's transport (uvloop's, in C), the response parsed
by httptools (llhttp, the parser of Node.js), over a small pool of persistent connections, and the
JSON body parsed once into the dict the engine uses. No worker thread: the hand-off to one and
back cost 0.4 ms of latency and 0.3 ms of CPU per GET (benchmarks/README.md, "What was
optimised").

Same client settings as the daemon's lightkube client: server, CA, client certificate and bearer
token (a token file is re-read on 401, like client-go) from the kubeconfig or the in-cluster
service account; the same token bucket (``--api-qps``/``--api-burst``) and API health tracking.
Configurations this module does not handle (exec or auth-provider credentials, basic auth, an
HTTPS proxy) keep the lightkube getter (:func:`claim_getter` decides).
"""
from __future__ import annotations

import asyncio
import json
import logging
import ssl
import urllib.parse
import urllib.request
from typing import Any, Awaitable, Callable, Mapping

import httptools

from .kubenames import check_claim_ref

log = logging.getLogger(__name__)

ClaimGetter = Callable[[str, str], Awaitable["Mapping[str, Any] | None"]]

#: Connections per server, all kept open while idle: more GETs at once wait for one. The API
#: server answers a few GETs at a time on a node's cores, and each TLS connection holds about
#: 0.3 MiB of buffers (a storm of 32 prepares with a connection each added 2 MiB of resident memory).
MAX_CONNECTIONS = 8
#: Seconds, like the lightkube client's default timeout: for connecting, and for the answer.
TIMEOUT = 10.0
#: A body larger than this (bytes) is refused: a ResourceClaim is at most a few hundred KiB.
MAX_BODY = 16 << 20


class ApiStatusError(Exception):
    """The API server answered a GET with an error status; ``code`` is the HTTP status and the
    message is the API server's own (``Status.message``)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.status = code  # what kube.RateLimitedClient looks for: an HTTP answer


class StaleConnection(ConnectionResetError):
    """A kept-alive connection ended before any byte of the answer came: the server closed it
    while idle, so the request is sent again on a new one."""


class _Connection(asyncio.Protocol):
    """One HTTPS connection; one request at a time (HTTP/1.1 without pipelining)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()
        self.closed = False
        self._parser = httptools.HttpResponseParser(self)
        self._answer: asyncio.Future[tuple[int, bytes]] | None = None
        self._body: list[bytes] = []
        self._size = 0
        self._started = False
        self._headers_done = False
        self._framed = False  # Content-Length or chunked: the parser sees where the answer ends
        self.keep_alive = True

    def request(self, data: bytes) -> asyncio.Future[tuple[int, bytes]]:
        assert self.transport is not None
        self._answer = self.loop.create_future()
        self._body, self._size, self._started = [], 0, False
        self._headers_done = self._framed = False
        self.transport.write(data)
        return self._answer

    def close(self) -> None:
        """Drop the connection at once (abort: no TLS close_notify exchange with a server that
        may not answer). Safe to call after its event loop has closed."""
        self.closed = True
        self._body = []
        if self.transport is not None and not self.loop.is_closed():
            self.transport.abort()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._answer is None or self._answer.done():
            return
        if exc is None and self._headers_done and not self._framed:
            # an answer without Content-Length or chunking ends where the connection ends (https://www.rfc-editor.org/rfc/rfc9112#section-6.3)
            self.keep_alive = False
            self._answer.set_result((self._parser.get_status_code(), b"".join(self._body)))
            return
        err = exc or ConnectionResetError("the API server closed the connection")
        self._answer.set_exception(err if self._started else StaleConnection(str(err)))

    def data_received(self, data: bytes) -> None:
        if self._answer is None or self._answer.done():  # bytes nobody asked for: out of step
            self.close()
            return
        self._started = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ConnectionError(f"malformed HTTP answer from the API server: {exc}"))

    def _fail(self, exc: Exception) -> None:
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(exc)
        self.close()

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() in (b"content-length", b"transfer-encoding"):
            self._framed = True

    def on_headers_complete(self) -> None:
        self._headers_done = True

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > MAX_BODY:
            self._fail(ConnectionError(f"the API server's answer is larger than {MAX_BODY} bytes"))
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        self.keep_alive = self._parser.should_keep_alive()
        if self._answer is not None and not self._answer.done():
            self._answer.set_result((self._parser.get_status_code(), b"".join(self._body)))
        self._body = []


class KeepAliveGetter:
    """``await get(path) -> (status, body bytes)`` over a pool of HTTPS connections to
    ``server`` (``https://host:port``), on the running event loop. ``token``: static bearer
    token; ``token_file``: file with the bearer token, read at first use and again after a 401.
    Raises OSError (ConnectionError for a malformed answer), TimeoutError after ``timeout``
    seconds, ssl.SSLError."""

    def __init__(self, server: str, context: ssl.SSLContext, *, token: str | None = None,
                 token_file: str | None = None, timeout: float = TIMEOUT) -> None:
        url = urllib.parse.urlsplit(server)
        if url.scheme != "https" or not url.hostname:
            raise ValueError(f"server {server!r}: only https:// servers are handled")
        self.host, self.port = url.hostname, url.port or 443
        self.prefix = url.path.rstrip("/")
        self.context, self.timeout = context, timeout
        self.token, self.token_file = token, token_file
        host = f"[{self.host}]" if ":" in self.host else self.host
        self._host_header = host if self.port == 443 else f"{host}:{self.port}"
        self._idle: list[_Connection] = []
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop the idle connections belong to
        self._slots = asyncio.Semaphore(MAX_CONNECTIONS)

    def _request(self, path: str) -> bytes:
        if self.token_file and not self.token:
            with open(self.token_file, encoding="utf-8") as f:  # small; read at first use and after a 401
                self.token = f.read().strip()
        if self.token and any(c in self.token for c in "\r\n\0"):
            raise ValueError(f"the bearer token{' in ' + self.token_file if self.token_file else ''} "
                             "contains a line break")
        auth = f"Authorization: Bearer {self.token}\r\n" if self.token else ""
        return (f"GET {self.prefix}{path} HTTP/1.1\r\nHost: {self._host_header}\r\n"
                f"Accept: application/json\r\nAccept-Encoding: identity\r\nUser-Agent: dra-framework\r\n"
                f"{auth}\r\n").encode()

    async def _connection(self) -> tuple[_Connection, bool]:
        loop = asyncio.get_running_loop()
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed and conn.loop is loop:
                return conn, True
            conn.close()
        return await self._connect(), False

    async def _connect(self) -> _Connection:
        _, conn = await asyncio.get_running_loop().create_connection(_Connection, self.host, self.port, ssl=self.context)
        return conn

    def _release(self, conn: _Connection) -> None:
        if conn.keep_alive and not conn.closed and conn.loop is self._loop:
            self._idle.append(conn)
        else:
            conn.close()

    async def _once(self, path: str) -> tuple[int, bytes]:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # connections of another (ended) loop cannot be used here
            self._loop, self._slots = loop, asyncio.Semaphore(MAX_CONNECTIONS)
            self.close()
        # The wait for a free connection is not the API server's slowness: outside the timeout.
        async with self._slots, asyncio.timeout(self.timeout):
            conn, reused = await self._connection()
            try:
                try:
                    answer = await conn.request(self._request(path))
                except StaleConnection:
                    if not reused:
                        raise
                    conn.close()
                    conn = await self._connect()
                    answer = await conn.request(self._request(path))
            except BaseException:
                conn.close()  # failed or cancelled mid-answer: the connection's state is unknown
                raise
            self._release(conn)
            return answer

    async def get(self, path: str) -> tuple[int, bytes]:
        status, body = await self._once(path)
        if status == 401 and self.token_file:
            self.token = None  # rotated service-account token: read it again, retry once
            status, body = await self._once(path)
        return status, body

    def close(self) -> None:
        """Close the idle connections (connections in use go back to the pool when their GET
        ends)."""
        idle, self._idle = self._idle, []
        for c in idle:
            c.close()


def _status_message(status: int, body: bytes) -> str:
    try:
        data = json.loads(body)
        if isinstance(data, dict) and data.get("message"):
            return str(data["message"])
    except ValueError:
        pass
    return f"HTTP {status}: {body[:200].decode('utf-8', 'replace')}"


def getter_from_kubeconfig(config: Any) -> KeepAliveGetter | None:
    """A :class:`KeepAliveGetter` for a lightkube ``SingleConfig``; None when its credentials or
    the environment (an HTTPS proxy for the server) need the lightkube client."""
    from lightkube.config.client_adapter import verify_cluster

    user, cluster = config.user, config.cluster
    if user is None or user.exec or user.auth_provider or (user.username and user.password):
        return None
    server = cluster.server
    host = urllib.parse.urlsplit(server).hostname or ""
    if urllib.request.getproxies().get("https") and not urllib.request.proxy_bypass(host):
        return None
    try:
        context = verify_cluster(cluster, user, config.abs_file)
        return KeepAliveGetter(server, context, token=None if user.token_file else user.token,
                               token_file=user.token_file)
    except (ValueError, OSError, ssl.SSLError) as exc:
        log.info("claim GET: using the lightkube client (%s)", exc)
        return None


def claim_getter(client: Any) -> ClaimGetter:
    """The engine's ``get_claim`` for the daemon's API client (:class:`dra_framework.kube.RateLimitedClient`):
    GET ``/apis/resource.k8s.io/v1/namespaces/<ns>/resourceclaims/<name>`` → the object as a
    dict (camelCase, as served), None on 404. Raises ValueError for a namespace or name that is
    not a DNS name (both go into the URL), :class:`ApiStatusError` for other error statuses and
    :class:`dra_framework.kube.ApiUnavailableError` when the server does not answer."""
    from .engine import lightkube_claim_getter

    config = getattr(client, "kube_config", None)
    getter = getter_from_kubeconfig(config) if config is not None else None
    if getter is None:
        return lightkube_claim_getter(client)
    health, transport = client.health, (*client.transport_errors, ssl.SSLError)

    async def get_claim(namespace: str, name: str) -> Mapping[str, Any] | None:
        check_claim_ref(namespace, name)
        await client.take_token()
        path = f"/apis/resource.k8s.io/v1/namespaces/{namespace}/resourceclaims/{name}"
        try:
            status, body = await getter.get(path)
        except transport as exc:
            raise health.failed(exc) from None
        health.ok()
        if status == 404:
            return None
        if status != 200:
            raise ApiStatusError(status, _status_message(status, body))
        obj = json.loads(body)
        if not isinstance(obj, dict):
            raise ApiStatusError(status, "the API server's answer is not an object")
        return obj

    get_claim.close = getter.close  # type: ignore[attr-defined]
    get_claim.getter = getter  # type: ignore[attr-defined]
    return get_claim


__all__ = ["ApiStatusError", "KeepAliveGetter", "claim_getter", "getter_from_kubeconfig"]
