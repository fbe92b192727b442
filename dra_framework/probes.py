"""The daemon's HTTP endpoints: ``/healthz`` and ``/readyz`` on ``--healthz-port``, ``/metrics``
on ``--metrics-port``.

Both are the standard library's ``ThreadingHTTPServer`` (``/metrics`` with prometheus-client's
own ``MetricsHandler``), bounded so that whoever can reach the port cannot starve the daemon
(docs/operations.md, "Probes and metrics"):

* ``bindAddress`` chooses the interface (default ``0.0.0.0``, what kubelet httpGet probes of a
  hostNetwork pod need; ``127.0.0.1`` keeps the ports local);
* at most ``httpMaxConnections`` connections are served at once per port; beyond that a new
  connection is closed at once (its file descriptor freed) and counted;
* a connection is closed after ``httpTimeoutSeconds`` without progress and after twice that in
  total (slow senders), and carries one request (HTTP/1.0, no keep-alive);
* a 503 body of ``/readyz`` lists the problems with host paths replaced by ``<path>``: file
  names are for the log and Events, not for anyone who can reach the port.

Each probe check runs on the daemon's event loop; a stuck loop shows as a failed liveness probe
(the check times out) instead of a hung socket.
"""
from __future__ import annotations

import asyncio
import logging
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Coroutine

log = logging.getLogger(__name__)

#: A check returns a list of problems; empty means healthy.
Check = Callable[[], Coroutine[Any, Any, list[str]]]

# An absolute path: "/" not preceded by a word character, ":" or "/" (so URLs stay), up to a
# separator. Matches /var/lib/kubelet/plugins/x/checkpoint.json, '/dev/nvidia0', "(/a/b)".
_PATH = re.compile(r"(?<![\w:/.])/[^\s'\",;:()\[\]{}]+")


def redact_paths(text: str) -> str:
    """``text`` with every absolute path replaced by ``<path>``."""
    return _PATH.sub("<path>", text)


class BoundedHTTPServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer with a connection cap, per-read timeout and total deadline.

    ``max_connections`` ≥ 1; ``timeout`` seconds per read/write; a connection lives at most
    ``2 * timeout`` seconds. ``host`` may be IPv4 or IPv6 (``::``)."""

    daemon_threads = True
    request_queue_size = 64

    def __init__(self, host: str, port: int, handler: type[BaseHTTPRequestHandler], *,
                 max_connections: int = 32, timeout: float = 5.0, name: str = "http") -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        handler = type(handler.__name__, (handler,), {"timeout": timeout, "protocol_version": "HTTP/1.0"})
        self.name = name
        self.conn_timeout = timeout
        self.rejected = 0
        self._slots = threading.BoundedSemaphore(max_connections)
        super().__init__((host, port), handler)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        if self._slots.acquire(blocking=False):
            return True
        self.rejected += 1
        if self.rejected == 1 or self.rejected % 1000 == 0:
            log.warning("%s port %d: connection limit reached, closing new connections (%d so far)",
                        self.name, self.server_address[1], self.rejected)
        return False  # the caller closes the socket at once

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        # Slow senders that keep each read under the timeout still end at the deadline.
        killer = threading.Timer(2 * self.conn_timeout, _shutdown_socket, (request,))
        killer.daemon = True
        killer.start()
        try:
            super().process_request_thread(request, client_address)
        finally:
            killer.cancel()
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("%s: connection from %s failed", self.name, client_address, exc_info=True)

    def start(self) -> None:
        threading.Thread(target=self.serve_forever, name=self.name, daemon=True).start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    @property
    def port(self) -> int:
        return self.server_address[1]


def _shutdown_socket(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class ProbeServer:
    """``/healthz`` and ``/livez`` (liveness) and ``/readyz`` (readiness) on ``host:port``."""

    def __init__(self, port: int, loop: asyncio.AbstractEventLoop, liveness: Check, readiness: Check,
                 host: str = "0.0.0.0", timeout: float = 5.0, max_connections: int = 32) -> None:
        self.loop = loop
        self.checks = {"/healthz": liveness, "/livez": liveness, "/readyz": readiness}
        self.timeout = timeout
        self._httpd = BoundedHTTPServer(host, port, self._handler(), max_connections=max_connections,
                                        timeout=timeout, name="probes")

    @property
    def port(self) -> int:
        return self._httpd.port

    def start(self) -> None:
        self._httpd.start()

    def stop(self) -> None:
        self._httpd.stop()

    def run_check(self, path: str) -> tuple[int, str]:
        check = self.checks.get(path.split("?")[0])
        if check is None:
            return 404, "not found\n"
        try:
            problems = asyncio.run_coroutine_threadsafe(check(), self.loop).result(self.timeout)
        except Exception as exc:  # noqa: BLE001 - a timed-out check is a failed probe
            problems = [f"check did not finish: {type(exc).__name__}"]
        if problems:
            return 503, "".join(f"{redact_paths(p)}\n" for p in problems)
        return 200, "ok\n"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server API
                code, body = server.run_check(self.path)
                data = body.encode()
                self.send_response(code)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:  # probes every few seconds: keep logs quiet
                pass

        return Handler


def metrics_server(port: int, registry: Any, host: str = "0.0.0.0", timeout: float = 5.0,
                   max_connections: int = 32) -> BoundedHTTPServer:
    """``/metrics`` of ``registry`` (prometheus-client's handler) on a bounded server; not started."""
    from prometheus_client.exposition import MetricsHandler

    return BoundedHTTPServer(host, port, MetricsHandler.factory(registry), max_connections=max_connections,
                             timeout=timeout, name="metrics")
