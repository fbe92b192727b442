"""Blocking file work runs inline while it is fast and in a worker thread while it is slow
(dra_framework/blocking_io.py); the checkpoint never waits for another process's lock on the
event loop."""
from __future__ import annotations

import asyncio
import fcntl
import os
import threading
import time

from dra_framework.blocking_io import BlockingIO, WouldBlock, running_inline
from dra_framework.engine import Checkpoint


def _where() -> tuple[str, bool]:
    return threading.current_thread().name, running_inline()


async def test_fast_work_moves_inline_and_slow_work_back_to_a_thread():
    io = BlockingIO("test", threshold=0.005)
    loop_thread = threading.current_thread().name
    name, inline = await io.run(_where)  # nothing measured yet: a thread
    assert name != loop_thread and not inline
    name, inline = await io.run(_where)
    assert name == loop_thread and inline, io
    for _ in range(8):  # slow work pushes the average over the threshold
        await io.run(time.sleep, 0.02)
    name, inline = await io.run(_where)
    assert name != loop_thread and not inline, io


async def test_one_slow_run_does_not_move_fast_work_to_a_thread(monkeypatch):
    """A run slowed by the machine (another process on the core, a page fault) must not send the
    work to threads: under load the GIL slows every run there, and the work would stay. (Unless it
    stalled the loop: the next test.)"""
    from dra_framework import blocking_io

    monkeypatch.setattr(blocking_io, "STALL_LIMIT", 1.0)
    io = BlockingIO("test", threshold=0.005)
    loop_thread = threading.current_thread().name
    for _ in range(4):
        await io.run(lambda: None)
    await io.run(time.sleep, 0.02)  # inline, slow once
    name, inline = await io.run(_where)
    assert name == loop_thread and inline, io
    for _ in range(4):  # slow as a rule now: a thread
        await io.run(time.sleep, 0.02)
    name, inline = await io.run(_where)
    assert name != loop_thread and not inline, io


async def test_work_that_would_block_inline_is_retried_in_a_thread():
    io = BlockingIO("test", threshold=1.0)
    await io.run(lambda: None)
    calls: list[bool] = []

    def work() -> str:
        calls.append(running_inline())
        if running_inline():
            raise WouldBlock("a lock")
        return threading.current_thread().name

    assert await io.run(work) != threading.current_thread().name
    assert calls == [True, False]


async def test_exceptions_propagate_from_both_places():
    io = BlockingIO("test", threshold=1.0)

    def boom() -> None:
        raise ValueError("bad")
    for _ in range(2):  # the first call runs in a thread, the second inline
        try:
            await io.run(boom)
        except ValueError as exc:
            assert str(exc) == "bad"
        else:
            raise AssertionError("no exception")


async def test_checkpoint_commit_waits_for_another_process_lock_off_the_loop(tmp_path):
    cp = Checkpoint(tmp_path / "checkpoint.json", boot_id="b")
    await cp.load()
    cp._io.threshold = 1.0  # treat this disk as fast: commits run inline
    for i in range(3):
        await cp.update(lambda claims, i=i: claims.update({f"u{i}": _entry(f"u{i}")}))
    assert cp._io.inline, cp._io
    # Another process (here: another open file description) holds the lock for 0.3 s.
    fd = os.open(cp.lock_path, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    threading.Timer(0.3, os.close, (fd,)).start()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1
    t = asyncio.ensure_future(ticker())
    t0 = time.monotonic()
    await cp.update(lambda claims: claims.update({"late": _entry("late")}))
    waited = time.monotonic() - t0
    t.cancel()
    assert waited >= 0.25  # it did wait for the lock ...
    assert ticks >= 10, f"the event loop was blocked while the lock was held ({ticks} ticks in {waited:.2f}s)"
    reread = Checkpoint(tmp_path / "checkpoint.json", boot_id="b")
    await reread.load()
    assert set(reread.claims) == {"u0", "u1", "u2", "late"}


def _entry(uid: str) -> dict:
    return {"namespace": "ns", "name": uid, "state": "PrepareStarted", "devices": []}


async def test_work_slower_than_the_threshold_runs_inline_while_its_owner_is_alone(monkeypatch):
    """A checkpoint commit on a disk (fsync: about a millisecond) runs on the loop while one
    claim is in flight, and in a thread while others are, so their work overlaps the wait."""
    from dra_framework import blocking_io

    monkeypatch.setattr(blocking_io, "ALONE_THRESHOLD", 1.0)
    monkeypatch.setattr(blocking_io, "STALL_LIMIT", 4.0)
    io = BlockingIO("test", threshold=0.005)
    loop_thread = threading.current_thread().name
    others = [0]
    io.alone = lambda: others[0] == 0
    for _ in range(3):
        await io.run(time.sleep, 0.02)  # slow: over the threshold, under ALONE_THRESHOLD
    name, inline = await io.run(_where)
    assert name == loop_thread and inline, io
    others[0] = 2
    name, inline = await io.run(_where)
    assert name != loop_thread and not inline, io
    io.alone = None  # an owner that never says it is alone: the threshold alone decides
    others[0] = 0
    name, inline = await io.run(_where)
    assert name != loop_thread and not inline, io


async def test_a_stalled_inline_run_sends_the_next_runs_to_a_thread_at_once(monkeypatch):
    """A disk whose fsync stalls (writeback pressure, image pulls) stalls the loop once, not once
    per run until the median catches up."""
    from dra_framework import blocking_io

    monkeypatch.setattr(blocking_io, "STALL_LIMIT", 0.015)
    io = BlockingIO("test", threshold=0.005)
    loop_thread = threading.current_thread().name
    for _ in range(8):
        await io.run(lambda: None)
    assert (await io.run(_where))[1]
    await io.run(time.sleep, 0.03)  # inline, stalled
    name, inline = await io.run(_where)
    assert name != loop_thread and not inline, io


async def test_runs_that_fail_count_as_runs():
    """Slow failing work (fsync stalling, then EIO) moves to a thread like slow work that succeeds."""
    io = BlockingIO("test", threshold=0.005)
    loop_thread = threading.current_thread().name
    for _ in range(2):
        await io.run(lambda: None)

    def slow_failure() -> None:
        time.sleep(0.01)
        raise OSError(5, "Input/output error")
    for _ in range(6):
        try:
            await io.run(slow_failure)
        except OSError:
            pass
    name, inline = await io.run(_where)
    assert name != loop_thread and not inline, io
