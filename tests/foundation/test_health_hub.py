"""The health hub: backend health sources feed the kubelet health state and the slice taints;
a failing source marks its devices Unknown and is restarted, without stopping anything else."""
from __future__ import annotations

import asyncio
from pathlib import Path

from dra_framework import hookimpl
from dra_framework.backend import BackendContext
from dra_framework.composition import BackendInstance
from dra_framework.health_hub import HealthHub
from dra_framework.kubelet.health import HealthState
from dra_framework.model import Health, HealthReport, Taint
from dra_framework.plugins import BackendHooks


def instance(key: str, backend: object) -> BackendInstance:
    ctx = BackendContext("d.example.com", "n1", Path("/"), Path("/tmp"), Path("/tmp"), backend_name=key)
    return BackendInstance(key, key, BackendHooks(key, backend), ctx)


async def test_reports_feed_health_state_and_taints_and_recovery_clears():
    changes = []
    state = HealthState("d.example.com")
    hub = HealthHub(state, lambda p: p or "n1", lambda: changes.append(dict(hub.taints)))
    gate = asyncio.Event()

    class Source:
        @hookimpl
        async def dra_watch_health(self, report):
            report(HealthReport("dev-0", Health.HEALTHY))
            report(HealthReport("dev-1", Health.UNHEALTHY, message="XID 79",
                                taints=[Taint("gpu.nvidia.com/xid", "79")]))
            await gate.wait()
            report(HealthReport("dev-1", Health.HEALTHY))
            await asyncio.Event().wait()

    hub.start([instance("src", Source())], lambda key: [(None, "dev-0"), (None, "dev-1")])
    await asyncio.sleep(0.05)
    snap = {d.device: d for d in state.snapshot()}
    assert snap["dev-0"].health == Health.HEALTHY and snap["dev-1"].health == Health.UNHEALTHY
    assert snap["dev-1"].message == "XID 79" and snap["dev-1"].pool == "n1"
    assert hub.taints == {("n1", "dev-1"): (Taint("gpu.nvidia.com/xid", "79"),)}
    gate.set()
    await asyncio.sleep(0.05)
    assert hub.taints == {} and len(changes) == 2
    await hub.stop()


async def test_failing_source_marks_unknown_and_restarts():
    state = HealthState("d.example.com")
    problems = []
    hub = HealthHub(state, lambda p: p or "n1", lambda: None, max_backoff=0.05,
                    on_problem=lambda source, msg: problems.append((source, msg)))
    calls = []

    class Flaky:
        @hookimpl
        async def dra_watch_health(self, report):
            calls.append(1)
            if len(calls) == 1:
                report(HealthReport("dev-0", Health.HEALTHY))
                raise RuntimeError("NVML event set broke")
            report(HealthReport("dev-0", Health.HEALTHY))
            await asyncio.Event().wait()

    hub.start([instance("flaky", Flaky())], lambda key: [(None, "dev-0")])
    for _ in range(50):
        await asyncio.sleep(0.02)
        snap = state.snapshot()
        if snap and snap[0].health == Health.UNKNOWN:
            break
    assert state.snapshot()[0].health == Health.UNKNOWN
    assert "NVML event set broke" in state.snapshot()[0].message
    await asyncio.sleep(1.2)  # first back-off is 1 s
    assert len(calls) >= 2 and state.snapshot()[0].health == Health.HEALTHY
    # Shown while failing (readiness, Node Event), cleared once the source reports again.
    assert [m is None for _, m in problems] == [False, True], problems
    assert "NVML event set broke" in problems[0][1] and "flaky" in problems[0][0]
    await hub.stop()


async def test_reports_from_another_thread_land_on_the_loop():
    state = HealthState("d.example.com")
    hub = HealthHub(state, lambda p: p or "n1", lambda: None)

    class Threaded:
        @hookimpl
        async def dra_watch_health(self, report):
            await asyncio.to_thread(report, HealthReport("dev-9", Health.UNHEALTHY, taints=[Taint("k", "v")]))
            await asyncio.Event().wait()

    hub.start([instance("t", Threaded())], lambda key: [])
    await asyncio.sleep(0.1)
    assert hub.taints == {("n1", "dev-9"): (Taint("k", "v"),)}
    await hub.stop()


async def test_stop_ends_a_source_that_turns_cancellation_into_an_error():
    # A source that catches CancelledError and raises its own error must not keep the hub (and
    # so the daemon's shutdown) running: the hub would otherwise retry it forever.
    hub = HealthHub(HealthState("d.example.com"), lambda p: p or "n1", lambda: None, max_backoff=0)
    started = asyncio.Event()

    class Swallows:
        @hookimpl
        async def dra_watch_health(self, report):
            started.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                raise ConnectionError("socket closed") from None

    hub.start([instance("src", Swallows())], lambda key: [(None, "dev-0")])
    await started.wait()
    await asyncio.wait_for(hub.stop(), 2)
