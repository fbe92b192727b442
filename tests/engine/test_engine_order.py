"""Per-claim ordering, deadlines and shutdown of the engine.

Operations on one claim UID run in arrival order, the API fetch included; work whose caller
stopped waiting is dropped before any side effect; shutdown does not wait for queued work; a
claim prepared already is answered from the checkpoint without a fetch."""
from __future__ import annotations

import asyncio
import contextlib
import time

import grpc
from engine_support import FakeBackend, queued, wait_for

from dra_framework.kube import TokenBucket
from dra_framework.kubelet import PluginServer, client
from dra_framework.kubelet.types import ClaimRef


class GatedGetter:
    """Wraps the in-memory getter: every fetch waits until ``open`` is set (a slow API server)."""

    def __init__(self, env) -> None:
        self.env = env
        self.open = asyncio.Event()
        self.waiting = 0

    async def __call__(self, namespace, name):
        self.waiting += 1
        try:
            await self.open.wait()
        finally:
            self.waiting -= 1
        return await self.env.get_claim(namespace, name)


def serve(engine, tmp_path) -> PluginServer:
    (tmp_path / "kl" / "plugins_registry").mkdir(parents=True)
    return PluginServer("gpu.example.com", engine, kubelet_root=str(tmp_path / "kl"))


def leftovers(env, uid):
    return env.engine.checkpoint.get(uid), [f for f in env.cdi_files() if uid in f]


async def test_unprepare_waits_for_a_prepare_that_is_still_fetching(fake_env):
    """An Unprepare arriving while the Prepare of the same claim is fetching the claim runs
    after it: when the Unprepare reports success, nothing of the claim is left."""
    gate = GatedGetter(fake_env)
    engine = await fake_env.make_engine()
    engine.get_claim = gate
    b = fake_env.instances["fake"]
    ref = fake_env.add_claim("c", [{"request": "gpu", "device": "dev-0"}])
    prep = asyncio.ensure_future(engine.prepare([ref]))
    await wait_for(lambda: gate.waiting == 1)
    unprep = asyncio.ensure_future(engine.unprepare([ref]))
    # the unprepare has been handled: answered, or queued behind the prepare
    await wait_for(lambda: unprep.done() or queued(engine, ref.uid) == 2)
    gate.open.set()
    assert (await prep)[ref.uid].error == ""
    assert await unprep == {ref.uid: ""}
    assert leftovers(fake_env, ref.uid) == (None, [])
    assert [c[0] for c in b.calls] == ["prepare", "unprepare"]


async def test_prepare_after_unprepare_runs_after_it(fake_env):
    """Arrival order holds the other way round too: Unprepare, then Prepare → prepared."""
    engine = await fake_env.make_engine()
    ref = fake_env.add_claim("c", [{"request": "gpu", "device": "dev-0"}])
    assert (await engine.prepare([ref]))[ref.uid].error == ""
    gate = GatedGetter(fake_env)
    engine.get_claim = gate
    unprep = asyncio.ensure_future(engine.unprepare([ref]))
    prep = asyncio.ensure_future(engine.prepare([ref]))   # must fetch: the entry is gone by then
    await wait_for(lambda: gate.waiting == 1)
    # The prepare fetches only once the unprepare removed everything (the task itself may still
    # be finishing its bookkeeping on a loaded machine, so the state is what is checked).
    assert leftovers(fake_env, ref.uid) == (None, [])
    assert await asyncio.wait_for(unprep, 10) == {ref.uid: ""}
    gate.open.set()
    assert (await prep)[ref.uid].error == ""
    entry, specs = leftovers(fake_env, ref.uid)
    assert entry["state"] == "PrepareCompleted" and len(specs) == 1


async def test_prepared_claim_is_answered_without_a_fetch(fake_env):
    """50 concurrent prepares of a prepared claim: no API call, one prepare at the backend."""
    engine = await fake_env.make_engine()
    ref = fake_env.add_claim("c", [{"request": "gpu", "device": "dev-0"}])
    assert (await engine.prepare([ref]))[ref.uid].error == ""
    fetches = fake_env.fetches
    outs = await asyncio.gather(*(engine.prepare([ref]) for _ in range(50)))
    assert all(o[ref.uid].error == "" and o[ref.uid].devices for o in outs)
    assert fake_env.fetches == fetches
    assert [c[0] for c in fake_env.instances["fake"].calls] == ["prepare"]


async def test_concurrent_first_prepares_fetch_once(fake_env):
    """Concurrent prepares of a new claim: the first fetches and prepares, the rest reuse it."""
    engine = await fake_env.make_engine()
    ref = fake_env.add_claim("c", [{"request": "gpu", "device": "dev-0"}])
    outs = await asyncio.gather(*(engine.prepare([ref]) for _ in range(20)))
    assert all(o[ref.uid].error == "" for o in outs)
    assert fake_env.fetches == 1


async def test_call_past_its_deadline_is_dropped_before_any_side_effect(fake_env, tmp_path):
    """Over the kubelet socket: a prepare whose gRPC deadline passes while the claim is being
    fetched is dropped; nothing is created even once the API server answers."""
    engine = await fake_env.make_engine()
    gate = GatedGetter(fake_env)
    engine.get_claim = gate
    ref = fake_env.add_claim("c", [{"request": "gpu", "device": "dev-0"}])
    async with serve(engine, tmp_path) as srv:
        try:  # both ends see the deadline at about the same time: either answer is fine
            out = await client.prepare(srv.paths.dra, [ref], timeout=0.5)
            assert "deadline passed" in out[ref.uid].error
        except grpc.aio.AioRpcError as err:
            assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        await wait_for(lambda: gate.waiting == 0, timeout=5)    # the fetch was given up
        assert not engine.is_busy(ref.uid)
        gate.open.set()
        await engine.drain()
        assert leftovers(fake_env, ref.uid) == (None, [])
        assert fake_env.instances["fake"].calls == []
        # the kubelet's retry prepares it
        out = await client.prepare(srv.paths.dra, [ref], timeout=5)
        assert out[ref.uid].error == ""


def rate_limited(env, qps: float):
    bucket = TokenBucket(qps, 1)

    async def get(namespace, name):
        await bucket.take()
        return await env.get_claim(namespace, name)
    return get


async def test_backlog_nobody_waits_for_does_not_delay_later_calls(fake_env, tmp_path):
    """A call with many unknown claims behind a rate-limited API client times out; a prepare
    sent after that is served at once instead of waiting for the abandoned backlog."""
    engine = await fake_env.make_engine()
    engine.get_claim = rate_limited(fake_env, qps=20)      # 300 claims: 15 s of fetches
    junk = [ClaimRef(uid=f"junk-{i}", namespace="default", name=f"junk-{i}") for i in range(300)]
    ref = fake_env.add_claim("c", [{"request": "gpu", "device": "dev-0"}])
    async with serve(engine, tmp_path) as srv:
        with contextlib.suppress(grpc.aio.AioRpcError):  # or answered "dropped" at the deadline
            await client.prepare(srv.paths.dra, junk, timeout=0.5)
        t0 = time.monotonic()
        out = await client.prepare(srv.paths.dra, [ref], timeout=5)
        assert out[ref.uid].error == ""
        assert time.monotonic() - t0 < 3
    assert fake_env.fetches < 60


async def test_shutdown_drops_queued_work(fake_env):
    """drain() (shutdown) answers queued and fetching operations with an error at once and
    leaves nothing behind; operations already changing node state finish."""
    engine = await fake_env.make_engine()
    gate = asyncio.Event()  # never set: every fetch after the first is still in flight at drain()
    fetches = 0

    async def get(namespace, name):
        # Not a rate limit: on a loaded machine a second fetch could end before drain() and that
        # claim would fail on the device the first one holds, not be dropped.
        nonlocal fetches
        fetches += 1
        if fetches > 1:
            await gate.wait()
        return await fake_env.get_claim(namespace, name)
    engine.get_claim = get
    refs = [fake_env.add_claim(f"c{i}", [{"request": "gpu", "device": "dev-shared"}]) for i in range(100)]
    call = asyncio.ensure_future(engine.prepare(refs))
    await wait_for(lambda: fake_env.fetches >= 1)
    await asyncio.wait_for(engine.drain(), 3)
    outs = await call
    dropped = [u for u, o in outs.items() if "shutting down" in o.error]
    done = [u for u, o in outs.items() if not o.error]
    assert len(dropped) > 80 and len(dropped) + len(done) == 100
    for u in dropped:
        assert leftovers(fake_env, u) == (None, [])
    for u in done:
        assert engine.checkpoint.get(u)["state"] == "PrepareCompleted"


async def test_default_rate_limit_prepares_a_full_node_well_inside_the_deadline(fake_env):
    """200 pods' claims starting at once, each fetched through a token bucket with the daemon's
    default apiQPS/apiBurst: all prepared within a quarter of the kubelet's 45 s deadline."""
    from dra_framework.config import Settings

    defaults = Settings.model_validate({})
    n = 200
    fake_env.factories = [("fake", lambda ctx: FakeBackend(ctx, names=[f"dev-{i}" for i in range(n)]))]
    engine = await fake_env.make_engine()
    bucket = TokenBucket(defaults.api_qps, defaults.api_burst)

    async def get(namespace, name):
        await bucket.take()
        return await fake_env.get_claim(namespace, name)
    engine.get_claim = get
    refs = [fake_env.add_claim(f"c{i}", [{"request": "gpu", "device": f"dev-{i}"}]) for i in range(n)]
    t0 = time.monotonic()
    outs = await asyncio.gather(*(engine.prepare([r], deadline=t0 + 45) for r in refs))
    assert all(o[r.uid].error == "" for o, r in zip(outs, refs, strict=True))
    assert time.monotonic() - t0 < 45 / 4
