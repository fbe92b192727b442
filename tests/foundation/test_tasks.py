"""dra_framework.tasks: back-off delays, supervised restarts, retries, periodic checks, the
problem channel (also from other threads) and cancellation at close."""
from __future__ import annotations

import asyncio
import threading

import pytest

from dra_framework.tasks import Backoff, TaskSupervisor


def test_backoff_doubles_up_to_the_cap_and_jitters_upwards():
    d = Backoff(initial=1, factor=2, cap=5).delays()
    assert [next(d) for _ in range(5)] == [1, 2, 4, 5, 5]
    j = Backoff(initial=1, factor=1, cap=1, jitter=0.5).delays()
    assert all(1 <= next(j) <= 1.5 for _ in range(50))
    for bad in ({"initial": 0}, {"factor": 0.5}, {"initial": 2, "cap": 1}, {"jitter": -1}):
        with pytest.raises(ValueError):
            Backoff(**bad)


def sink():
    got: list[tuple[str, str | None]] = []
    return got, lambda source, message: got.append((source, message))


async def test_a_crashing_task_is_reported_restarted_and_cleared_once_stable():
    got, on_problem = sink()
    sup = TaskSupervisor("t", on_problem=on_problem)
    runs = []
    stable = asyncio.Event()

    async def flaky():
        runs.append(1)
        if len(runs) < 3:
            raise RuntimeError(f"boom {len(runs)}")
        stable.set()
        await asyncio.sleep(3600)

    sup.spawn("flaky", flaky, restart=Backoff(initial=0.01, factor=2, cap=0.02))
    await asyncio.wait_for(stable.wait(), 5)
    await asyncio.sleep(0.1)  # longer than the last delay: the report is cleared
    assert [s for s, _ in got] == ["task:flaky"] * 3
    assert "boom 1" in got[0][1] and "boom 2" in got[1][1] and got[2][1] is None
    await sup.close()
    assert sup.tasks == frozenset() and sup.closed
    with pytest.raises(RuntimeError, match="closed"):
        sup.spawn("late", flaky)


async def test_a_task_without_restart_is_reported_once_and_forgotten():
    got, on_problem = sink()
    sup = TaskSupervisor("t", on_problem=on_problem)

    async def bad():
        raise ValueError("no")

    task = sup.spawn("once", bad)
    await asyncio.gather(task, return_exceptions=True)
    assert got == [("task:once", "background task once failed: no")] and sup.tasks == frozenset()


async def test_retry_reports_changes_only_and_clears_on_success():
    got, on_problem = sink()
    sup = TaskSupervisor("t", on_problem=on_problem)
    calls = iter([OSError("down"), OSError("down"), OSError("refused"), "ok"])

    async def call():
        r = next(calls)
        if isinstance(r, Exception):
            raise r
        return r

    assert await sup.retry("api", call, Backoff(initial=0.001, cap=0.001), what="cannot start") == "ok"
    assert got == [("api", "cannot start: down"), ("api", "cannot start: refused"), ("api", None)]


async def test_every_reports_and_clears_a_failing_check():
    got, on_problem = sink()
    sup = TaskSupervisor("t", on_problem=on_problem)
    results = iter([OSError("gone"), None])
    done = asyncio.Event()

    async def check():
        r = next(results, None)
        if r is not None:
            raise r
        done.set()

    sup.every("sockets", 0.01, check, what="cannot serve")
    await asyncio.wait_for(done.wait(), 5)
    await sup.close()
    assert got[:2] == [("sockets", "cannot serve: gone"), ("sockets", None)]


async def test_reports_from_other_threads_arrive_on_the_loop_and_expire():
    loop_thread = threading.get_ident()
    seen: list[tuple[str, str | None, int]] = []
    sup = TaskSupervisor("t", on_problem=lambda s, m: seen.append((s, m, threading.get_ident())))
    await asyncio.to_thread(sup.report, "checkpoint:corrupt", "moved aside", ttl=0.05)
    await asyncio.sleep(0.2)
    assert seen == [("checkpoint:corrupt", "moved aside", loop_thread), ("checkpoint:corrupt", None, loop_thread)]


async def test_close_cancels_tasks_spawned_from_threads_too():
    sup = TaskSupervisor("t")
    started = asyncio.Event()

    async def forever():
        started.set()
        await asyncio.sleep(3600)

    await asyncio.to_thread(sup.spawn_threadsafe, "bg", forever)
    await asyncio.wait_for(started.wait(), 5)
    (task,) = sup.tasks
    await sup.close()
    assert task.cancelled() and sup.tasks == frozenset()
