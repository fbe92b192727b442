"""Work nobody waits for is dropped: a call with 1,500 unknown claims behind a slow API rate
limit does not delay a call sent after the kubelet gave up, and SIGTERM does not wait for such
a backlog (the real daemon, the real apiserver, the kubelet's gRPC socket)."""
from __future__ import annotations

import asyncio
import contextlib
import time

import grpc
import pytest

from dra_framework.kubelet import ClaimRef, client

from test_e2e_example import config

pytestmark = pytest.mark.k8s

DRIVER = "backlog.dra.dev"


def junk(n: int, tag: str) -> list[ClaimRef]:
    return [ClaimRef(uid=f"00000000-0000-0000-{tag}-{i:012d}", namespace="default", name=f"junk-{i}")
            for i in range(n)]


def test_backlog_is_dropped_at_the_deadline_and_at_sigterm(kube_apiserver, kubelet_shim, dra_driver):
    node = "e2e-backlog"
    shim = kubelet_shim(node)
    cfg = config([{"name": "example", "options": {"count": 1}}], driver=DRIVER)
    cfg.update(apiQPS=5, apiBurst=10)                      # 1,500 GETs = 5 minutes of rate limit
    daemon = dra_driver(cfg, shim)
    endpoint = shim.wait_registered(DRIVER, timeout=60)["endpoint"]

    async def scenario() -> float:
        with contextlib.suppress(grpc.aio.AioRpcError):   # the kubelet gives up after 2 s
            await client.prepare(endpoint, junk(1500, "0001"), timeout=2)
        t0 = time.monotonic()
        late = junk(1, "0002")[0]
        out = await client.prepare(endpoint, [late], timeout=10)
        assert "not found" in out[late.uid].error, out
        assert time.monotonic() - t0 < 5

        pending = asyncio.ensure_future(client.prepare(endpoint, junk(1500, "0003"), timeout=45))
        await asyncio.sleep(1)                              # the call is queued behind the rate limit
        t0 = time.monotonic()
        assert await asyncio.to_thread(daemon.stop, timeout=30) == 0, daemon.logs()
        with contextlib.suppress(grpc.aio.AioRpcError):
            answered = await pending
            assert all("shutting down" in o.error or "not found" in o.error for o in answered.values())
        return time.monotonic() - t0

    # Waiting for the backlog would take 300 s (1,500 GETs at 5 QPS); the bound leaves room for a
    # loaded 2-core machine, where the stop itself has taken over 10 s.
    assert asyncio.run(scenario()) < 25
    assert "Traceback" not in daemon.logs()
