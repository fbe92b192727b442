"""kill -9 between PrepareStarted and PrepareCompleted
(https://github.com/kubernetes-sigs/dra-driver-nvidia-gpu/issues/840), then recovery through the
next Unprepare, the next Prepare, or the janitor; plus the janitor's rules."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest
from engine_support import Env, claim_obj, crash_factories, new_uid, wait_for

from dra_framework.cdi.testing import assert_valid_cdi_dir
from dra_framework.engine import PREPARE_COMPLETED, PREPARE_STARTED, Janitor
from dra_framework.engine.checkpoint import decode
from dra_framework.kubelet.types import ClaimRef

HERE = Path(__file__).parent


async def crash_mid_prepare(root: Path, devices=("dev-0", "part-0"), env=None) -> ClaimRef:
    """Run crash_driver.py, wait until the backend has done its side effects, SIGKILL it.
    ``env``: where it hangs (default ``DRA_TEST_HANG``: in dra_prepare)."""
    uid = new_uid()
    obj = claim_obj("victim", uid, [{"request": f"r{i}", "device": d} for i, d in enumerate(devices)])
    claim_file = root / "claim.json"
    root.mkdir(parents=True, exist_ok=True)
    claim_file.write_text(json.dumps(obj))
    ready = root / "state" / "crash" / "ready"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(HERE / "crash_driver.py"), str(root), str(claim_file),
        env={**os.environ, **(env or {"DRA_TEST_HANG": "1"})}, cwd=str(HERE))
    try:
        await wait_for(lambda: ready.exists() or proc.returncode is not None, timeout=30)
        assert proc.returncode is None, "driver process exited early"
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGKILL)
        await proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return ClaimRef(uid, "default", "victim")


def state(root: Path) -> dict:
    d = root / "state" / "crash"
    return {
        "bound": sorted(p.name for p in (d / "bound").glob("*")) if (d / "bound").exists() else [],
        "partitions": sorted(p.name for p in (d / "partitions").glob("*")) if (d / "partitions").exists() else [],
        "log": (d / "calls.log").read_text().splitlines() if (d / "calls.log").exists() else [],
    }


async def killed_env(tmp_path) -> tuple[Env, ClaimRef]:
    root = tmp_path / "node"
    ref = await crash_mid_prepare(root)
    # what the dead process left behind: a PrepareStarted entry with the journal and partition
    claims, _ = decode((root / "kubelet" / "plugins" / "gpu.example.com" / "checkpoint.json").read_bytes())
    entry = claims[ref.uid]
    assert entry["state"] == PREPARE_STARTED
    assert sorted(entry["journal"]["crash"]) == ["bound", "partition/part-0"]
    assert entry["partitions"] == [{"backend": "crash", "device": "part-0", "record": {"name": "part-0"}}]
    assert state(root)["bound"] == ["dev-0", "part-0"] and state(root)["partitions"] == ["part-0"]
    env = Env(root, crash_factories())
    return env, ref


async def test_kill9_then_unprepare_rolls_back(tmp_path):
    env, ref = await killed_env(tmp_path)
    engine = await env.make_engine()
    assert engine.checkpoint.get(ref.uid)["state"] == PREPARE_STARTED  # start-up leaves it
    assert await engine.unprepare([ref]) == {ref.uid: ""}
    s = state(env.root)
    assert s["bound"] == [] and s["partitions"] == []
    assert s["log"] == [f"unprepare {ref.uid} completed=False physical=True journal=['bound', 'partition/part-0']",
                        "destroy part-0"]
    assert engine.checkpoint.claims == {} and env.cdi_files() == []


async def test_kill9_then_prepare_rolls_back_and_prepares_anew(tmp_path):
    env, ref = await killed_env(tmp_path)
    obj = json.loads((env.root / "claim.json").read_text())
    env.claims[("default", "victim")] = obj
    engine = await env.make_engine()
    out = await engine.prepare([ref])
    assert out[ref.uid].error == ""
    s = state(env.root)
    assert s["log"][:2] == [f"unprepare {ref.uid} completed=False physical=True journal=['bound', 'partition/part-0']",
                            "destroy part-0"]
    assert s["bound"] == ["dev-0", "part-0"] and s["partitions"] == ["part-0"]
    entry = engine.checkpoint.get(ref.uid)
    assert entry["state"] == PREPARE_COMPLETED and len(entry["partitions"]) == 1
    assert_valid_cdi_dir(env.cdi_root, allow_empty=False)
    assert await engine.unprepare([ref]) == {ref.uid: ""}
    assert state(env.root)["bound"] == [] and state(env.root)["partitions"] == []


async def test_kill9_then_janitor_rolls_back_deleted_claim(tmp_path):
    env, ref = await killed_env(tmp_path)
    engine = await env.make_engine()
    janitor = Janitor(engine, interval=0.05)
    # the claim is gone from the API server (never in env.claims): the janitor's first pass cleans
    task = janitor.start()
    await wait_for(lambda: engine.checkpoint.get(ref.uid) is None)
    await janitor.stop()
    assert task.done()
    s = state(env.root)
    assert s["bound"] == [] and s["partitions"] == []
    assert len([ln for ln in s["log"] if ln.startswith("unprepare")]) == 1


async def test_janitor_rules(fake_env):
    env = fake_env
    engine = await env.make_engine()
    backend = env.instances["fake"]
    keep = env.add_claim("keep", [{"request": "gpu", "device": "dev-0"}])
    replaced = env.add_claim("replaced", [{"request": "gpu", "device": "dev-1"}])
    done = env.add_claim("done", [{"request": "gpu", "device": "dev-shared"}])
    assert (await engine.prepare([done]))[done.uid].error == ""

    # two interrupted prepares, written as a crashed process would have left them
    def started(ref, device):
        return {"uid": ref.uid, "namespace": ref.namespace, "name": ref.name, "state": PREPARE_STARTED,
                "bootId": env.boot_id, "backends": ["fake"], "journal": {"fake": {"k": 1}}, "partitions": [],
                "devices": [{"backend": "fake", "pool": "node-1", "device": device, "exclusive": True}]}
    await engine.checkpoint.update(lambda c: c.update({keep.uid: started(keep, "dev-0"),
                                                       replaced.uid: started(replaced, "dev-1")}))
    env.add_claim("replaced", [{"request": "gpu", "device": "dev-1"}])  # same name, new UID
    env.delete_claim(done)  # completed entries are the kubelet's business, never the janitor's

    janitor = Janitor(engine)
    assert await janitor.run_once() == [replaced.uid]
    assert set(engine.checkpoint.claims) == {keep.uid, done.uid}
    assert backend.calls[-1][:4] == ("unprepare", replaced.uid, False, {"k": 1})

    # an API error is not "gone"
    async def broken(ns, name):
        raise RuntimeError("apiserver unavailable")
    assert await Janitor(engine, get_claim=broken).run_once() == []
    assert set(engine.checkpoint.claims) == {keep.uid, done.uid}


async def test_janitor_skips_claims_in_flight(fake_env):
    env = fake_env
    engine = await env.make_engine()
    b = env.instances["fake"]
    release = asyncio.Event()

    async def gate(ctx, devices):
        await release.wait()
    b.before_prepare = gate
    ref = env.add_claim("slow", [{"request": "gpu", "device": "dev-0"}])
    call = asyncio.ensure_future(engine.prepare([ref]))
    await wait_for(lambda: len(b.calls) == 1)
    env.delete_claim(ref)  # deleted while being prepared
    assert await Janitor(engine).run_once() == []
    release.set()
    assert (await call)[ref.uid].error == ""


def test_janitor_interval_validated(fake_env):
    with pytest.raises(ValueError):
        Janitor(object(), get_claim=lambda ns, n: None, interval=0)  # type: ignore[arg-type]
