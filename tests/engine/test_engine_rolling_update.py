"""Two driver pods on one node during a rolling update share the checkpoint: a claim that one is
preparing is neither prepared twice nor rolled back by the other (https://github.com/kubernetes/kubernetes/issues/140818, the Go helper's
``serialize.lock``), while independent claims still run concurrently."""
from __future__ import annotations

import asyncio

from engine_support import Env, FakeBackend, new_uid

from dra_framework.engine.claim_lock import stripe


async def test_overlapping_instances_prepare_a_claim_once(tmp_path):
    env = Env(tmp_path, [("fake", lambda ctx: FakeBackend(ctx))])
    old = await env.make_engine()
    old_backend = env.instances["fake"]
    new = await env.make_engine()          # second "pod": own memory, same files
    new_backend = env.instances["fake"]
    ref = env.add_claim("c", [{"request": "r", "device": "dev-0"}])
    # a UID on another lock stripe: two of the 64 stripes' claims serialize by design
    other_uid = next(u for u in iter(new_uid, None) if stripe(u) != stripe(ref.uid))
    other = env.add_claim("d", [{"request": "r", "device": "dev-1"}], uid=other_uid)
    gate, inside = asyncio.Event(), asyncio.Event()

    async def slow(ctx, devices):
        inside.set()
        await gate.wait()

    old_backend.before_prepare = slow
    first = asyncio.create_task(old.prepare([ref]))
    await asyncio.wait_for(inside.wait(), 10)  # the old pod is inside the backend's prepare
    second = asyncio.create_task(new.prepare([ref]))
    independent = await asyncio.wait_for(new.prepare([other]), 5)   # not blocked by claim c
    assert independent[other.uid].error == ""
    await asyncio.sleep(0.1)
    assert not second.done(), "the new pod must wait for the old pod's prepare of the same claim"
    gate.set()
    a, b = await asyncio.wait_for(asyncio.gather(first, second), 10)
    assert a[ref.uid].error == "" and b[ref.uid].error == ""
    assert [d.cdi_device_ids for d in a[ref.uid].devices] == [d.cdi_device_ids for d in b[ref.uid].devices]
    prepares = [c for c in old_backend.calls + new_backend.calls if c[0] == "prepare" and c[1] == ref.uid]
    assert len(prepares) == 1, prepares
    assert not [c for c in old_backend.calls + new_backend.calls if c[0] == "unprepare"]
