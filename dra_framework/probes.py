"""Liveness and readiness endpoints on ``--healthz-port``: ``/healthz`` and ``/readyz``.

Each endpoint runs async checks on the daemon's event loop and answers 200 with ``ok`` or 503
with one line per failing check (``driver gpu.nvidia.com: registration rejected: ...``). The
HTTP server itself is the standard library's, in a thread, so a stuck event loop shows as a
failed liveness probe (the check times out) instead of a hung socket.
"""
from __future__ import annotations

import asyncio
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Awaitable, Callable

log = logging.getLogger(__name__)

#: A check returns a list of problems; empty means healthy.
Check = Callable[[], Awaitable[list[str]]]


class ProbeServer:
    def __init__(self, port: int, loop: asyncio.AbstractEventLoop, liveness: Check, readiness: Check,
                 host: str = "0.0.0.0", timeout: float = 5.0) -> None:
        self.loop = loop
        self.checks = {"/healthz": liveness, "/livez": liveness, "/readyz": readiness}
        self.timeout = timeout
        self._httpd = ThreadingHTTPServer((host, port), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="probes", daemon=True)

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def run_check(self, path: str) -> tuple[int, str]:
        check = self.checks.get(path.split("?")[0])
        if check is None:
            return 404, "not found\n"
        try:
            problems = asyncio.run_coroutine_threadsafe(check(), self.loop).result(self.timeout)
        except Exception as exc:  # noqa: BLE001 - a timed-out check is a failed probe
            problems = [f"check did not finish: {exc!r}"]
        if problems:
            return 503, "".join(f"{p}\n" for p in problems)
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
