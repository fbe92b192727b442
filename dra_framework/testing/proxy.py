"""A pausable TCP proxy for holding API-server calls in tests.

Put it in front of the test kube-apiserver (TLS passes through untouched) and point a client at
it with :meth:`PausableProxy.kubeconfig`. While paused, bytes from clients are held and the
connections stay open, so a request is in flight for as long as the test wants: a deterministic
stand-in for a slow API server or a client-side rate limit.

    proxy = await PausableProxy.start("127.0.0.1", 6443)
    proxy.pause()
    task = asyncio.ensure_future(client.get(...))
    await proxy.held.wait()          # the request reached the proxy and is held
    ...
    proxy.resume()
    await proxy.close()
"""
from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from urllib.parse import urlsplit


class PausableProxy:
    """Forwards 127.0.0.1:``port`` to ``target``. ``held`` is set once client bytes arrive while
    paused; ``requests`` counts client→server chunks forwarded (a rough request counter)."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self.held = asyncio.Event()
        self.requests = 0
        self._open = asyncio.Event()
        self._open.set()
        self._server: asyncio.AbstractServer | None = None
        self._pumps: set[asyncio.Task[None]] = set()

    @classmethod
    async def start(cls, host: str, port: int) -> "PausableProxy":
        proxy = cls(host, port)
        proxy._server = await asyncio.start_server(proxy._handle, "127.0.0.1", 0)
        proxy.port = proxy._server.sockets[0].getsockname()[1]
        return proxy

    @classmethod
    async def for_url(cls, url: str) -> "PausableProxy":
        """A proxy in front of ``https://host:port``."""
        parts = urlsplit(url)
        return await cls.start(parts.hostname or "127.0.0.1", parts.port or 443)

    def pause(self) -> None:
        self.held.clear()
        self._open.clear()

    def resume(self) -> None:
        self._open.set()

    def kubeconfig(self, src: Path, dst: Path) -> Path:
        """Copy the JSON kubeconfig ``src`` to ``dst`` with every cluster's server set to the
        proxy (same scheme; the host stays 127.0.0.1, so the serving certificate still matches)."""
        cfg = json.loads(Path(src).read_text())
        for c in cfg.get("clusters", []):
            parts = urlsplit(c["cluster"]["server"])
            c["cluster"]["server"] = f"{parts.scheme}://127.0.0.1:{self.port}"
        Path(dst).write_text(json.dumps(cfg))
        return Path(dst)

    async def drop_connections(self) -> None:
        """Close every proxied connection (both sides), as a server closing idle keep-alive
        connections does; new connections are still accepted."""
        for t in list(self._pumps):
            t.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)

    async def close(self) -> None:
        self._open.set()
        if self._server is not None:
            self._server.close()
        for t in list(self._pumps):
            t.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        for src, dst, gate in ((reader, up_w, True), (up_r, writer, False)):
            task = asyncio.ensure_future(self._pump(src, dst, gate))
            self._pumps.add(task)
            task.add_done_callback(self._pumps.discard)

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, gate: bool) -> None:
        try:
            while data := await src.read(65536):
                if gate:
                    if not self._open.is_set():
                        self.held.set()
                        await self._open.wait()
                    self.requests += 1
                dst.write(data)
                await dst.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            with contextlib.suppress(Exception):
                dst.close()
