"""The claim GET of the prepare path over kept-alive HTTP/1.1 connections (docs/operations.md,
"Claim fetch").

Every NodePrepareResources fetches the ResourceClaim fresh from the API server (never a cache: the
kubelet's claim UID must match what the API server has now). Through lightkube that GET costs
more CPU than the rest of the prepare: an HTTP/1.1 client written in Python over a TLS stream
wrapped in Python, a typed model built from the JSON and converted back into a dict. Here the GET
runs in a worker thread on :mod:`http.client` (TLS in the ``ssl`` module's C code) over a small pool
of persistent connections, and the JSON body is parsed once into the dict the engine uses.

Same client settings as the daemon's lightkube client: server, CA, client certificate and bearer
token (a token file is re-read on 401, like client-go) from the kubeconfig or the in-cluster
service account; the same token bucket (``--api-qps``/``--api-burst``) and API health tracking.
Configurations this module does not handle (exec or auth-provider credentials, basic auth, an
HTTPS proxy) keep the lightkube getter (:func:`claim_getter` decides).
"""
from __future__ import annotations

import asyncio
import http.client
import json
import logging
import ssl
import threading
import urllib.parse
import urllib.request
from typing import Any, Awaitable, Callable, Mapping

from .kubenames import check_claim_ref

log = logging.getLogger(__name__)

ClaimGetter = Callable[[str, str], Awaitable["Mapping[str, Any] | None"]]

#: Idle connections kept per server; more are opened under load and closed when returned.
MAX_IDLE = 8
#: Seconds, like the lightkube client's default timeout.
TIMEOUT = 10.0
#: Errors of a kept-alive connection the server closed meanwhile: retried once on a new one.
_STALE = (http.client.RemoteDisconnected, http.client.BadStatusLine, BrokenPipeError, ConnectionResetError,
          ssl.SSLEOFError)


class ApiStatusError(Exception):
    """The API server answered a GET with an error status; ``code`` is the HTTP status and the
    message is the API server's own (``Status.message``)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.status = code  # what kube.RateLimitedClient looks for: an HTTP answer


class KeepAliveGetter:
    """Blocking ``get(path) -> (status, body bytes)`` over a pool of HTTPS connections to
    ``server`` (``https://host:port``); thread-safe. ``token``: static bearer token;
    ``token_file``: file with the bearer token, read at first use and again after a 401."""

    def __init__(self, server: str, context: ssl.SSLContext, *, token: str | None = None,
                 token_file: str | None = None, timeout: float = TIMEOUT) -> None:
        url = urllib.parse.urlsplit(server)
        if url.scheme != "https" or not url.hostname:
            raise ValueError(f"server {server!r}: only https:// servers are handled")
        self.host, self.port = url.hostname, url.port or 443
        self.prefix = url.path.rstrip("/")
        self.context, self.timeout = context, timeout
        self.token, self.token_file = token, token_file
        self._idle: list[http.client.HTTPSConnection] = []
        self._lock = threading.Lock()

    def _headers(self) -> dict[str, str]:
        h = {"Accept": "application/json", "User-Agent": "dra-framework"}
        if self.token_file and not self.token:
            with open(self.token_file, encoding="utf-8") as f:
                self.token = f.read().strip()
        if self.token:
            h["Authorization"] = f"Bearer {self.token}"
        return h

    def _connection(self) -> tuple[http.client.HTTPSConnection, bool]:
        with self._lock:
            if self._idle:
                return self._idle.pop(), True
        return http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout, context=self.context), False

    def _release(self, conn: http.client.HTTPSConnection) -> None:
        with self._lock:
            if len(self._idle) < MAX_IDLE:
                self._idle.append(conn)
                return
        conn.close()

    def _once(self, path: str) -> tuple[int, bytes]:
        conn, reused = self._connection()
        try:
            conn.request("GET", self.prefix + path, headers=self._headers())
            resp = conn.getresponse()
            body = resp.read()
        except _STALE:
            conn.close()
            if not reused:
                raise
            conn, _ = http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout,
                                                  context=self.context), False
            try:
                conn.request("GET", self.prefix + path, headers=self._headers())
                resp = conn.getresponse()
                body = resp.read()
            except BaseException:
                conn.close()
                raise
        except BaseException:
            conn.close()
            raise
        if resp.will_close:
            conn.close()
        else:
            self._release(conn)
        return resp.status, body

    def get(self, path: str) -> tuple[int, bytes]:
        status, body = self._once(path)
        if status == 401 and self.token_file:
            self.token = None  # rotated service-account token: read it again, retry once
            status, body = self._once(path)
        return status, body

    def close(self) -> None:
        with self._lock:
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
    health, transport = client.health, (*client.transport_errors, http.client.HTTPException)

    async def get_claim(namespace: str, name: str) -> Mapping[str, Any] | None:
        check_claim_ref(namespace, name)
        await client.take_token()
        path = f"/apis/resource.k8s.io/v1/namespaces/{namespace}/resourceclaims/{name}"
        try:
            status, body = await asyncio.to_thread(getter.get, path)
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
    return get_claim


__all__ = ["ApiStatusError", "KeepAliveGetter", "claim_getter", "getter_from_kubeconfig"]
