"""Half-created partitions, lost checkpoints and crash leftovers (docs/backends.md "Crash safety
of partitions", docs/operations.md "The checkpoint"): a kill -9 inside dra_create_partition, a
create that fails half-way, a deleted checkpoint.json while claims are prepared, temp files of
interrupted writes, and the example backend's marker file (ENOSPC-like write failure, symlink)."""
from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys

import pytest
from engine_support import VENDOR, Env, crash_factories
from test_engine_crash import crash_mid_prepare, state

from dra_framework.engine import PREPARE_STARTED
from dra_framework.engine.checkpoint import decode
from dra_framework.fsutil import remove_stale_temp_files, write_state_file


def _entry(root, uid):
    claims, _ = decode((root / "kubelet" / "plugins" / "gpu.example.com" / "checkpoint.json").read_bytes())
    return claims.get(uid)


@pytest.mark.parametrize("record", [True, False], ids=["backend-records", "backend-records-nothing"])
async def test_kill9_inside_create_partition_then_unprepare_destroys_it(tmp_path, record):
    """The driver dies after the partition exists but before its record is stored: the pending
    entry written before the hook ran is handed to dra_destroy_partition; nothing is left."""
    root = tmp_path / "node"
    env = {"DRA_TEST_HANG_IN_CREATE": "1", **({} if record else {"DRA_TEST_NO_RECORD": "1"})}
    ref = await crash_mid_prepare(root, env=env)
    entry = _entry(root, ref.uid)
    assert entry["state"] == PREPARE_STARTED
    journal = {"partition/part-0": {"name": "part-0"}} if record else {}
    assert {"backend": "crash", "device": "part-0", "state": "pending", "journal": journal} in entry["partitions"]
    assert state(root)["partitions"] == ["part-0"]

    node = Env(root, crash_factories())
    engine = await node.make_engine()
    assert await engine.unprepare([ref]) == {ref.uid: ""}
    s = state(root)
    assert s["partitions"] == [] and "destroy part-0 (pending)" in s["log"]
    assert engine.checkpoint.claims == {} and node.cdi_files() == []


async def test_kill9_inside_create_partition_then_prepare_retry(tmp_path):
    root = tmp_path / "node"
    ref = await crash_mid_prepare(root, env={"DRA_TEST_HANG_IN_CREATE": "1", "DRA_TEST_NO_RECORD": "1"})
    node = Env(root, crash_factories())
    node.claims[("default", "victim")] = json.loads((root / "claim.json").read_text())
    engine = await node.make_engine()
    assert (await engine.prepare([ref]))[ref.uid].error == ""
    assert state(root)["log"][:2] == [f"unprepare {ref.uid} completed=False physical=True journal=[]",
                                      "destroy part-0 (pending)"]
    parts = engine.checkpoint.get(ref.uid)["partitions"]
    assert parts == [{"backend": "crash", "device": "part-0", "record": {"name": "part-0"}}]
    assert await engine.unprepare([ref]) == {ref.uid: ""}
    assert state(root)["partitions"] == [] and state(root)["bound"] == []


async def test_create_partition_failing_after_its_side_effect_is_rolled_back(tmp_path, monkeypatch):
    monkeypatch.setenv("DRA_TEST_FAIL_IN_CREATE", "1")
    monkeypatch.setenv("DRA_TEST_NO_RECORD", "1")
    node = Env(tmp_path, crash_factories())
    engine = await node.make_engine()
    ref = node.add_claim("c", [{"request": "a", "device": "dev-0"}, {"request": "b", "device": "part-0"}])
    out = await engine.prepare([ref])
    assert "step 2 of the partition failed" in out[ref.uid].error
    assert state(tmp_path)["partitions"] == []  # the marker the failed create wrote is gone
    assert engine.checkpoint.claims == {}


async def test_missing_checkpoint_with_claim_specs_is_a_lost_checkpoint(example_env):
    """checkpoint.json deleted while claims are prepared: the specs are kept (Recovered), the
    problem is reported, partitions stay owned; the kubelet's unprepare then cleans up."""
    env = example_env
    engine = await env.make_engine()
    ref = env.add_claim("half", [{"request": "h", "device": "acc-1-half-0"}, {"request": "f", "device": "acc-2"}])
    assert (await engine.prepare([ref]))[ref.uid].error == ""
    marker = env.state_root / "example" / "partitions" / "acc-1-half-0"
    assert marker.exists()
    spec = env.cdi_root / f"{VENDOR}-claim_{ref.uid}.json"
    env.cp_path.unlink()

    engine = await env.make_engine()
    assert spec.exists() and marker.exists()
    entry = engine.checkpoint.get(ref.uid)
    assert entry["state"] == "Recovered"
    # which of the spec's devices are partitions is unknown now: each one of a backend that
    # creates partitions is kept as a recovered pending partition (destroy tolerates the others)
    assert entry["partitions"] == [{"backend": "example", "device": d, "state": "pending", "journal": {},
                                    "recovered": True} for d in ("acc-1-half-0", "acc-2")]
    assert [p.reason for p in env.problems] == ["missing"]
    assert ref.uid in env.problems[0].message

    assert await engine.unprepare([ref]) == {ref.uid: ""}
    assert not spec.exists() and not marker.exists()
    assert engine.checkpoint.claims == {}


async def test_missing_checkpoint_without_specs_is_a_fresh_node(example_env):
    await example_env.make_engine()
    assert example_env.problems == []


async def test_recovered_partitions_are_owned_at_reconcile(tmp_path):
    from dra_example_backend import ExampleBackend, Options

    from dra_framework import hookimpl

    seen: list = []

    class Ex(ExampleBackend):
        @hookimpl
        def dra_reconcile_partitions(self, owned):
            seen.append(list(owned))

    env = Env(tmp_path, [("example", lambda ctx: Ex(Options(), ctx))])
    engine = await env.make_engine()
    ref = env.add_claim("half", [{"request": "h", "device": "acc-0-half-1"}])
    assert (await engine.prepare([ref]))[ref.uid].error == ""
    env.cp_path.write_text("garbage")  # corrupt, same handling
    await env.make_engine()
    assert seen[-1] == [{"device": "acc-0-half-1", "pending": True, "journal": {}, "recovered": True}]


async def test_stale_temp_files_removed_at_start_up(example_env):
    env = example_env
    engine = await env.make_engine()
    ref = env.add_claim("half", [{"request": "h", "device": "acc-1-half-0"}])
    assert (await engine.prepare([ref]))[ref.uid].error == ""
    cp_dir = env.cp_path.parent
    leftovers = [cp_dir / ".checkpoint.json.k2j4h5g6.tmp",
                 env.cdi_root / f".{VENDOR}-claim_{ref.uid}.json.a1b2c3d4.tmp",
                 env.state_root / "example" / "partitions" / ".acc-1-half-0.zz99yy88.tmp"]
    for p in leftovers:
        p.write_text("{half")
    live = env.state_root / "example" / ".other.q1w2e3r4.tmp"  # a write in progress elsewhere
    live.write_text("x")
    fd = os.open(live, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        engine = await env.make_engine()
    finally:
        os.close(fd)
    assert [p for p in leftovers if p.exists()] == []
    assert live.exists()
    assert engine.checkpoint.get(ref.uid)["state"] == "PrepareCompleted"


def test_remove_stale_temp_files_never_follows_links(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / ".victim.abcdefgh.tmp").write_text("keep")
    d = tmp_path / "state"
    d.mkdir()
    (d / "link").symlink_to(outside)
    (d / ".x.abcdefgh.tmp").symlink_to(outside / ".victim.abcdefgh.tmp")
    assert remove_stale_temp_files(d, recursive=True) == []
    assert (outside / ".victim.abcdefgh.tmp").read_text() == "keep"


def test_write_state_file_refuses_a_planted_symlink(tmp_path):
    target = tmp_path / "etc-passwd"
    target.write_text("root:x:0:0\n")
    marker = tmp_path / "partitions" / "acc-0-half-0"
    marker.parent.mkdir()
    marker.symlink_to(target)
    with pytest.raises(OSError) as err:
        write_state_file(marker, "uid")
    assert err.value.filename == str(marker)
    assert target.read_text() == "root:x:0:0\n" and marker.is_symlink()
    assert [p.name for p in marker.parent.iterdir()] == ["acc-0-half-0"]  # no temp file left


async def test_example_backend_partition_through_a_planted_symlink_fails_cleanly(example_env, tmp_path):
    env = example_env
    engine = await env.make_engine()
    target = tmp_path / "precious"
    target.write_text("keep me")
    marker = env.state_root / "example" / "partitions" / "acc-1-half-0"
    marker.parent.mkdir(parents=True)
    marker.symlink_to(target)
    ref = env.add_claim("half", [{"request": "h", "device": "acc-1-half-0"}])
    out = await engine.prepare([ref])
    assert "acc-1-half-0" in out[ref.uid].error and "symbolic link" in out[ref.uid].error
    assert target.read_text() == "keep me"
    assert engine.checkpoint.claims == {} and env.cdi_files() == []


WRITE_FAILS = r"""
import asyncio, resource, signal, sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from engine_support import Env
from dra_example_backend import ExampleBackend, Options
from dra_framework import hookimpl

class DiskFull(ExampleBackend):
    @hookimpl
    def dra_create_partition(self, ctx, device):
        # the file system fills up while the marker is written: writes of a byte or more fail
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, hard))
        try:
            return super().dra_create_partition(ctx, device)
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))

async def main():
    env = Env(Path(sys.argv[1]), [("example", lambda ctx: DiskFull(Options(), ctx))])
    engine = await env.make_engine()
    ref = env.add_claim("half", [{"request": "h", "device": "acc-1-half-0"}])
    out = await engine.prepare([ref])
    print(out[ref.uid].error, engine.checkpoint.claims)
asyncio.run(main())
"""


def test_example_backend_leaves_no_empty_marker_when_the_write_fails(tmp_path):
    """A write that fails half-way (disk full) must not leave an empty marker behind."""
    here = os.path.dirname(__file__)
    res = subprocess.run([sys.executable, "-c", WRITE_FAILS, str(tmp_path), here], capture_output=True,
                         text=True, timeout=120, cwd=here)
    assert "File too large" in res.stdout and res.stdout.rstrip().endswith("{}"), res.stdout + res.stderr
    assert list((tmp_path / "state" / "example" / "partitions").iterdir()) == []
