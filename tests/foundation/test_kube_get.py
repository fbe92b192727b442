"""The prepare path's claim GET (dra_framework/kube_get.py) against a real kube-apiserver: the
object exactly as served, 404 as None, kept-alive connections the server closed, an unreachable
server, the rate limit, and configurations that keep the lightkube getter."""
from __future__ import annotations

import asyncio
import json
import time

import pytest

from dra_framework.config import Settings
from dra_framework.kube import ApiUnavailableError, make_client
from dra_framework.kube_get import ApiStatusError, claim_getter
from dra_framework.testing import PausableProxy

pytestmark = pytest.mark.k8s


def settings(kubeconfig, qps: float = 1000, burst: int = 1000) -> Settings:
    return Settings.model_validate({"kubeconfig": str(kubeconfig), "apiQPS": qps, "apiBurst": burst})


@pytest.fixture
def claim(k8s_objects):
    return k8s_objects.resource_claim("default", "fetched", {"devices": {"requests": [
        {"name": "gpu", "exactly": {"deviceClassName": "some-class"}}]}})


async def test_get_returns_the_object_as_served(kube_apiserver, claim):
    client = make_client(settings(kube_apiserver.kubeconfig))
    get = claim_getter(client)
    assert hasattr(get, "close"), "a client-certificate kubeconfig must use the keep-alive getter"
    got = await get("default", "fetched")
    served = kube_apiserver.get("/apis/resource.k8s.io/v1/namespaces/default/resourceclaims/fetched")
    assert got == served and got["metadata"]["uid"] == claim["metadata"]["uid"]
    assert await get("default", "missing") is None
    with pytest.raises(ValueError, match="claim namespace 'a/b' is invalid"):
        await get("a/b", "fetched")
    assert client.health.problem is None


async def test_forbidden_is_an_api_answer_naming_the_reason(kube_apiserver, claim, tmp_path):
    """An error status is the API server's answer (its message), not an unreachable server."""
    cfg = json.loads(kube_apiserver.kubeconfig.read_text())
    for u in cfg["users"]:  # no credentials: anonymous, which RBAC forbids
        u["user"] = {}
    (tmp_path / "anon").write_text(json.dumps(cfg))
    client = make_client(settings(tmp_path / "anon"))
    with pytest.raises(ApiStatusError) as exc:
        await claim_getter(client)("default", "fetched")
    assert exc.value.code in (401, 403) and "resourceclaims" in str(exc.value)
    assert client.health.problem is None


async def test_connections_closed_by_the_server_and_an_unreachable_server(kube_apiserver, claim, tmp_path):
    proxy = await PausableProxy.for_url(kube_apiserver.url)
    try:
        client = make_client(settings(proxy.kubeconfig(kube_apiserver.kubeconfig, tmp_path / "kc")))
        get = claim_getter(client)
        assert (await get("default", "fetched"))["metadata"]["name"] == "fetched"
        await proxy.drop_connections()  # the kept-alive connection is dead now: retried on a new one
        assert (await get("default", "fetched"))["metadata"]["name"] == "fetched"
        await proxy.close()
        with pytest.raises(ApiUnavailableError, match="unreachable"):
            await get("default", "fetched")
        assert client.health.problem is not None
    finally:
        await proxy.close()


async def test_requests_take_the_rate_limit(kube_apiserver, claim):
    get = claim_getter(make_client(settings(kube_apiserver.kubeconfig, qps=10, burst=1)))
    t0 = time.monotonic()
    await asyncio.gather(*(get("default", "fetched") for _ in range(4)))
    assert time.monotonic() - t0 >= 0.25  # 1 at once, then 10/s


def test_exec_credentials_keep_the_lightkube_getter(kube_apiserver, tmp_path):
    cfg = json.loads(kube_apiserver.kubeconfig.read_text())
    for u in cfg["users"]:
        u["user"] = {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": "/bin/false"}}
    (tmp_path / "exec").write_text(json.dumps(cfg))
    assert not hasattr(claim_getter(make_client(settings(tmp_path / "exec"))), "close")


async def test_a_cancelled_or_timed_out_get_never_hands_its_answer_to_the_next(kube_apiserver, k8s_objects, tmp_path):
    """The GET runs on the event loop: a GET cancelled (the kubelet's deadline) or timed out while
    its answer is on the way must not leave that answer on a kept-alive connection for the next
    GET, which would then return the wrong claim."""
    for name in ("first", "second"):
        k8s_objects.resource_claim("default", name, {"devices": {"requests": [
            {"name": "gpu", "exactly": {"deviceClassName": "some-class"}}]}})
    proxy = await PausableProxy.for_url(kube_apiserver.url)
    try:
        client = make_client(settings(proxy.kubeconfig(kube_apiserver.kubeconfig, tmp_path / "kc")))
        get = claim_getter(client)
        assert (await get("default", "first"))["metadata"]["name"] == "first"  # one kept-alive connection
        proxy.pause()
        pending = asyncio.ensure_future(get("default", "first"))
        await asyncio.wait_for(proxy.held.wait(), 10)
        pending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await pending
        proxy.resume()
        got = await asyncio.gather(*(get("default", n) for n in ("second", "first", "second")))
        assert [o["metadata"]["name"] for o in got] == ["second", "first", "second"]
        assert client.health.problem is None
    finally:
        await proxy.close()


async def test_no_answer_in_time_is_an_unreachable_server_and_the_next_get_works(kube_apiserver, claim, tmp_path):
    proxy = await PausableProxy.for_url(kube_apiserver.url)
    try:
        client = make_client(settings(proxy.kubeconfig(kube_apiserver.kubeconfig, tmp_path / "kc")))
        get = claim_getter(client)
        get.getter.timeout = 0.5
        assert (await get("default", "fetched"))["metadata"]["name"] == "fetched"
        proxy.pause()
        with pytest.raises(ApiUnavailableError, match="no answer in time"):
            await get("default", "fetched")
        assert client.health.problem is not None
        proxy.resume()
        assert (await get("default", "fetched"))["metadata"]["uid"] == claim["metadata"]["uid"]
        assert client.health.problem is None
    finally:
        await proxy.close()


class _Server:
    """A TLS HTTP/1.1 server on 127.0.0.1 for answers kube-apiserver never gives but a proxy in
    front of it may: ``answer`` is written after ``delay`` seconds for every request."""

    def __init__(self, tmp_path, answer: bytes, delay: float = 0.0, close: bool = False) -> None:
        import ssl

        from dra_framework.testing.k8s import write_pki

        self.pki = write_pki(tmp_path / "pki")
        self.ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ctx.load_cert_chain(self.pki["apiserver.crt"], self.pki["apiserver.key"])
        self.answer, self.delay, self.close = answer, delay, close
        self.requests = 0

    async def _handle(self, reader, writer) -> None:
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                self.requests += 1
                await asyncio.sleep(self.delay)
                writer.write(self.answer)
                await writer.drain()
                if self.close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.ctx)
        return f"https://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    def getter(self, url: str, timeout: float = 10.0):
        import ssl

        from dra_framework.kube_get import KeepAliveGetter

        return KeepAliveGetter(url, ssl.create_default_context(cafile=str(self.pki["ca.crt"])), timeout=timeout)


async def test_an_answer_that_ends_with_the_connection(tmp_path):
    """No Content-Length and no chunking (HTTP/1.0, or a proxy's Connection: close): the body
    ends where the connection does (https://www.rfc-editor.org/rfc/rfc9112#section-6.3), as with http.client."""
    server = _Server(tmp_path, b'HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{"kind": "ResourceClaim"}', close=True)
    getter = server.getter(await server.start())
    for _ in range(2):  # the second GET needs a new connection
        assert await getter.get("/x") == (200, b'{"kind": "ResourceClaim"}')
    assert server.requests == 2


async def test_waiting_for_a_free_connection_does_not_count_as_no_answer(tmp_path):
    """More GETs at once than connections: the wait for a free one is not the server being slow
    (which would fail the claims and report the API server unreachable)."""
    from dra_framework.kube_get import MAX_CONNECTIONS

    server = _Server(tmp_path, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", delay=0.3)
    getter = server.getter(await server.start(), timeout=1.0)
    answers = await asyncio.gather(*(getter.get("/x") for _ in range(4 * MAX_CONNECTIONS)))
    assert answers == [(200, b"{}")] * (4 * MAX_CONNECTIONS)  # 4 waves of 0.3 s: 1.2 s in all


def test_one_getter_on_one_event_loop_after_another(tmp_path):
    """Connections of a loop that has ended are dropped, not reused or closed on the dead loop."""
    server_loop = asyncio.new_event_loop()
    server = _Server(tmp_path, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
    url = server_loop.run_until_complete(server.start())
    import threading

    threading.Thread(target=server_loop.run_forever, daemon=True).start()
    try:
        getter = server.getter(url)
        for _ in range(3):
            assert asyncio.run(getter.get("/x")) == (200, b"{}")
    finally:
        server_loop.call_soon_threadsafe(server_loop.stop)
