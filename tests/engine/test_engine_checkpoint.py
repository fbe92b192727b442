"""The checkpoint file: format, checksum over stored bytes, atomicity, cross-process locking,
damaged files (moved aside, reported, engine keeps serving)."""
from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import textwrap

import pytest
from engine_support import Env

from dra_framework.engine.checkpoint import (
    SCHEMA_VERSION,
    Checkpoint,
    CheckpointError,
    CheckpointFormatError,
    decode,
    encode,
    read_boot_id,
)


def test_roundtrip_and_header():
    raw = encode({"u1": {"state": "PrepareStarted", "x": [1, 2]}}, "boot-a")
    head, payload = raw.split(b"\n", 1)
    header = json.loads(head)
    assert header["version"] == SCHEMA_VERSION and header["length"] == len(payload)
    assert header["checksum"] == "sha256:" + hashlib.sha256(payload).hexdigest()
    assert decode(raw) == ({"u1": {"state": "PrepareStarted", "x": [1, 2]}}, "boot-a")


def test_checksum_is_over_stored_bytes_not_reserialisation():
    """NVIDIA #1080: a field this version does not know (or different formatting) must not make
    the file corrupt."""
    payload = b'{ "claims": {"u1": {"state": "PrepareCompleted", "brandNewField": {"z": 1}}},\n "bootId": "b" }'
    header = json.dumps({"format": "dra-framework-checkpoint", "version": 1, "length": len(payload),
                         "checksum": "sha256:" + hashlib.sha256(payload).hexdigest()})
    claims, boot = decode(header.encode() + b"\n" + payload)
    assert claims["u1"]["brandNewField"] == {"z": 1} and boot == "b"


@pytest.mark.parametrize("name,mutate,reason", [
    ("empty", lambda raw: b"", "empty"),
    ("truncated", lambda raw: raw[:-7], "truncated"),
    ("truncated-header", lambda raw: raw[:20], "truncated"),
    ("bad-checksum", lambda raw: raw.replace(b'"PrepareCompleted"', b'"PrepareCompletes"'), "checksum"),
    ("garbage", lambda raw: b"\x00\xff not json at all", "garbage"),
    ("newer-version", lambda raw: raw.replace(b'"version":1', b'"version":99'), "newer-version"),
])
async def test_damaged_checkpoint_is_moved_aside_and_engine_serves(fake_env, name, mutate, reason):
    env = fake_env
    engine = await env.make_engine()
    old = env.add_claim("old", [{"request": "gpu", "device": "dev-0"}])
    assert (await engine.prepare([old]))[old.uid].error == ""
    raw = env.cp_path.read_bytes()
    env.cp_path.write_bytes(mutate(raw))
    damaged = env.cp_path.read_bytes()

    engine2 = await env.make_engine()  # must not raise
    assert [p.reason for p in env.problems] == [reason]
    problem = env.problems[0]
    assert problem.moved_to and os.path.basename(problem.moved_to).startswith("checkpoint.json.corrupt-")
    with open(problem.moved_to, "rb") as f:
        assert f.read() == damaged  # kept for diagnosis
    # The kubelet still believes "old" prepared: its CDI spec is kept (containers may restart)
    # and the claim is recorded as recovered, holding no devices.
    assert list(engine2.checkpoint.claims) == [old.uid]
    assert engine2.checkpoint.claims[old.uid]["state"] == "Recovered"
    assert any(old.uid in f for f in env.cdi_files())
    # the driver keeps serving: unprepare of the lost claim succeeds and removes its spec
    assert await engine2.unprepare([old]) == {old.uid: ""}
    assert not any(old.uid in f for f in env.cdi_files())
    new = env.add_claim("new", [{"request": "gpu", "device": "dev-1"}])
    assert (await engine2.prepare([new]))[new.uid].error == ""
    assert set(decode(env.cp_path.read_bytes())[0]) == {new.uid}


async def test_claim_recovered_after_lost_checkpoint_is_prepared_again_from_scratch(fake_env):
    """After a lost checkpoint a kubelet re-prepare of a recovered claim redoes it (the backend's
    prepare runs again) instead of trusting state that is gone; the spec survives a 2nd restart."""
    env = fake_env
    engine = await env.make_engine()
    c = env.add_claim("c", [{"request": "gpu", "device": "dev-0"}])
    ids = [d.cdi_device_ids for d in (await engine.prepare([c]))[c.uid].devices]
    env.cp_path.write_bytes(b"garbage")
    await env.make_engine()
    engine3 = await env.make_engine()           # a second restart: the recovery is remembered
    assert engine3.checkpoint.claims[c.uid]["state"] == "Recovered"
    calls_before = len(env.instances["fake"].calls)
    again = (await engine3.prepare([c]))[c.uid]
    assert again.error == "" and [d.cdi_device_ids for d in again.devices] == ids
    assert [x[0] for x in env.instances["fake"].calls[calls_before:]] == ["prepare"]
    assert engine3.checkpoint.claims[c.uid]["state"] == "PrepareCompleted"


async def test_newer_version_written_by_another_running_instance_is_not_clobbered(tmp_path):
    path = tmp_path / "plugins" / "d" / "checkpoint.json"
    cp = Checkpoint(path, boot_id="b")
    await cp.load()
    await cp.update(lambda c: c.__setitem__("u1", {"state": "PrepareStarted"}))
    newer = encode({"u9": {}}, "b").replace(b'"version":1', b'"version":2')
    path.write_bytes(newer)
    with pytest.raises(CheckpointError, match="newer driver instance"):
        await cp.update(lambda c: c.__setitem__("u2", {}))
    assert path.read_bytes() == newer
    assert cp.problems[-1].reason == "newer-version" and cp.problems[-1].moved_to is None


async def test_atomic_writes_leave_no_temp_files_and_private_mode(tmp_path):
    path = tmp_path / "checkpoint.json"
    cp = Checkpoint(path, boot_id="b")
    await cp.load()
    for i in range(5):
        await cp.update(lambda c, i=i: c.__setitem__(f"u{i}", {"i": i}))
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.json", "checkpoint.lock"]
    assert os.stat(path).st_mode & 0o777 == 0o600


async def test_group_commit_and_failing_update_isolated(tmp_path):
    cp = Checkpoint(tmp_path / "checkpoint.json", boot_id="b")
    await cp.load()

    def bad(c):
        c["poison"] = {}
        raise ValueError("nope")

    results = await asyncio.gather(*(cp.update(lambda c, i=i: c.__setitem__(f"u{i}", {"i": i}) or i)
                                     for i in range(100)), cp.update(bad), return_exceptions=True)
    assert results[:100] == list(range(100))
    assert isinstance(results[100], ValueError)
    claims, _ = decode((tmp_path / "checkpoint.json").read_bytes())
    assert len(claims) == 100 and "poison" not in claims


async def test_non_json_update_fails_without_corrupting(tmp_path):
    cp = Checkpoint(tmp_path / "checkpoint.json", boot_id="b")
    await cp.load()
    await cp.update(lambda c: c.__setitem__("ok", {}))
    with pytest.raises(CheckpointError):
        await cp.update(lambda c: c.__setitem__("bad", {"x": object()}))
    assert set(decode((tmp_path / "checkpoint.json").read_bytes())[0]) == {"ok"}


async def test_two_processes_share_the_checkpoint_without_lost_updates(tmp_path):
    """https://github.com/kubernetes-sigs/dra-driver-nvidia-gpu/issues/839:
    two driver processes (upgrade overlap) doing read-modify-writes concurrently."""
    path = tmp_path / "checkpoint.json"
    script = textwrap.dedent(f"""
        import asyncio
        from dra_framework.engine.checkpoint import Checkpoint
        async def main():
            cp = Checkpoint({str(path)!r}, boot_id="b")
            await cp.load()
            for i in range(60):
                await cp.update(lambda c, i=i: c.__setitem__(f"child-{{i}}", {{"i": i}}))
        asyncio.run(main())
    """)
    cp = Checkpoint(path, boot_id="b")
    await cp.load()
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", script)
    for i in range(60):
        await cp.update(lambda c, i=i: c.__setitem__(f"parent-{i}", {"i": i}))
        await asyncio.sleep(0)
    assert await proc.wait() == 0
    await cp.refresh()
    assert len(cp.claims) == 120
    assert len(decode(path.read_bytes())[0]) == 120


def test_boot_id_read_under_host_root(tmp_path):
    p = tmp_path / "proc" / "sys" / "kernel" / "random"
    p.mkdir(parents=True)
    (p / "boot_id").write_text("0b5e9a2c-1d2e-4f00-8a9b-0123456789ab\n")
    assert read_boot_id(tmp_path) == "0b5e9a2c-1d2e-4f00-8a9b-0123456789ab"
    assert read_boot_id(tmp_path / "missing") == ""
    assert Checkpoint(tmp_path / "c.json", host_root=tmp_path).boot_id.startswith("0b5e9a2c")


def test_decode_rejects_other_json():
    with pytest.raises(CheckpointFormatError) as e:
        decode(b'{"checksum": 1, "v2": {}}')  # e.g. the NVIDIA driver's format
    assert e.value.reason in ("garbage", "truncated")


async def test_lock_is_held_across_read_modify_write(tmp_path):
    """While another process holds the lock, an update waits (without blocking the loop)."""
    path = tmp_path / "checkpoint.json"
    cp = Checkpoint(path, boot_id="b")
    await cp.load()
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import fcntl, os, sys, time
        fd = os.open({str(tmp_path / 'checkpoint.lock')!r}, os.O_RDWR | os.O_CREAT)
        fcntl.flock(fd, fcntl.LOCK_EX)
        print("locked", flush=True)
        time.sleep(0.5)
    """)], stdout=subprocess.PIPE)
    assert holder.stdout.readline().strip() == b"locked"
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)
    t = asyncio.ensure_future(ticker())
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await cp.update(lambda c: c.__setitem__("u", {}))
    waited = loop.time() - t0
    t.cancel()
    holder.wait()
    assert waited >= 0.2 and ticks >= 10


async def test_engine_start_with_missing_checkpoint_dir(tmp_path):
    env = Env(tmp_path, [])
    engine = await env.make_engine()
    assert engine.checkpoint.claims == {} and env.problems == []
