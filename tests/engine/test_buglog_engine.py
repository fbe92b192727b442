"""Scenarios from public DRA driver bug reports at the engine level: real checkpoint, real CDI
writer, backends through the real hook layer; each test links its report (an upstream issue or
the docs/failure-modes.md section that cites it)."""
from __future__ import annotations

import asyncio

from engine_support import Env, FakeBackend

from dra_framework import hookimpl
from dra_framework.engine import PREPARE_COMPLETED, Janitor
from dra_framework.model import ContainerEdits, PreparedDeviceEdits, PrepareResult


class BlockingUnprepare(FakeBackend):
    """dra_unprepare waits for ``release`` (an in-flight NodeUnprepareResources)."""

    def __init__(self, ctx):
        super().__init__(ctx)
        self.release = asyncio.Event()
        self.unpreparing = asyncio.Event()

    @hookimpl
    async def dra_unprepare(self, stored):
        self.calls.append(("unprepare", stored.claim.uid))
        self.unpreparing.set()
        await asyncio.wait_for(self.release.wait(), 5)
        self.calls.append(("unprepared", stored.claim.uid))


async def test_prepare_during_inflight_unprepare_of_same_uid_runs_after_it(tmp_path):
    """docs/failure-modes.md#claim-re-created-under-the-same-name (1):
    the kubelet calls Unprepare X and, while that is in flight, Prepare X for another
    pod. Operations on one UID are serialised in that order: the Prepare waits, then prepares
    the claim from scratch (it must not return the devices being torn down)."""
    env = Env(tmp_path, [("fake", lambda ctx: BlockingUnprepare(ctx))])
    engine = await env.make_engine()
    b = env.instances["fake"]
    x = env.add_claim("x", [{"request": "gpu", "device": "dev-0"}])
    assert (await engine.prepare([x]))[x.uid].error == ""
    unprep = asyncio.ensure_future(engine.unprepare([x]))
    await asyncio.wait_for(b.unpreparing.wait(), 5)
    prep = asyncio.ensure_future(engine.prepare([x]))
    await asyncio.sleep(0.2)
    assert not prep.done()  # waits for the unprepare of the same UID
    b.release.set()
    assert await asyncio.wait_for(unprep, 5) == {x.uid: ""}
    out = await asyncio.wait_for(prep, 5)
    assert out[x.uid].error == "" and out[x.uid].devices[0].device == "dev-0"
    assert [c[0] for c in b.calls] == ["prepare", "unprepare", "unprepared", "prepare"]
    assert engine.checkpoint.get(x.uid)["state"] == PREPARE_COMPLETED
    assert env.cdi_files() == [f"k8s.gpu.example.com-claim_{x.uid}.json"]


async def test_janitor_in_tight_loop_during_50_concurrent_prepare_unprepare_pairs(tmp_path):
    """https://github.com/kubernetes-sigs/dra-driver-nvidia-gpu/issues/839:
    a background GC pass runs in a tight loop while 50 Prepare/Unprepare pairs run
    concurrently. Nothing is rolled back or swept by mistake, and the final checkpoint and CDI
    directory match exactly the claims still prepared."""
    names = [f"d-{i}" for i in range(50)]
    env = Env(tmp_path, [("fake", lambda ctx: FakeBackend(ctx, names=names))])
    engine = await env.make_engine()
    refs = [env.add_claim(f"c{i}", [{"request": "r", "device": f"d-{i}"}]) for i in range(50)]
    janitor = Janitor(engine, interval=60)
    stop = asyncio.Event()
    rolled: list[str] = []
    passes = 0

    async def gc_loop():
        nonlocal passes
        while not stop.is_set():
            rolled.extend(await janitor.run_once())
            passes += 1
            await asyncio.sleep(0)

    async def pair(i: int) -> None:
        r = refs[i]
        out = await engine.prepare([r])
        assert out[r.uid].error == "", out[r.uid].error
        await asyncio.sleep(0)
        if i % 2 == 0:  # even claims are unprepared again, odd ones stay prepared
            assert await engine.unprepare([r]) == {r.uid: ""}

    gc = asyncio.ensure_future(gc_loop())
    try:
        await asyncio.wait_for(asyncio.gather(*(pair(i) for i in range(50))), 60)
    finally:
        stop.set()
        await gc
    assert passes > 1 and rolled == []
    kept = {r.uid for i, r in enumerate(refs) if i % 2}
    await engine.checkpoint.refresh()
    assert set(engine.checkpoint.claims) == kept
    assert all(e["state"] == PREPARE_COMPLETED for e in engine.checkpoint.claims.values())
    assert env.cdi_files() == sorted(f"k8s.gpu.example.com-claim_{u}.json" for u in kept)
    # A second instance on the same state directory (upgrade overlap) sees the same state.
    other = await env.make_engine()
    assert set(other.checkpoint.claims) == kept


async def test_state_for_later_steps_survives_a_restart(tmp_path):
    """https://github.com/kubernetes-sigs/dranet/issues/89:
    everything later steps need (configs, teardown data, CDI edits) is persisted with the
    checkpoint: after a driver restart the stored configs are readable, the kubelet's re-prepare
    returns the same CDI IDs without re-running the backend, and unprepare gets the teardown data
    from the checkpoint alone."""
    from engine_support import opaque
    from test_engine_configs import GpuConfig, Recording, gpu

    class Rec(Recording):
        @hookimpl
        async def dra_prepare(self, ctx, devices):
            self.calls.append(("prepare", ctx.claim.uid))
            return PrepareResult(devices={d.name: PreparedDeviceEdits(ContainerEdits(env={"TAG": d.configs[-1].tag}))
                                          for d in devices}, teardown={"ifname": "net1"})

        @hookimpl
        def dra_unprepare(self, stored):
            self.calls.append(("unprepare", stored.claim.uid, dict(stored.teardown)))

    env = Env(tmp_path, [("gpu", lambda ctx: Rec(ctx, ("gpu-0",), [GpuConfig]))])
    engine = await env.make_engine()
    ref = env.add_claim("c", [{"request": "a", "device": "gpu-0"}], configs=[opaque(gpu("blue"))])
    first = await engine.prepare([ref])
    assert first[ref.uid].error == ""

    engine = await env.make_engine()  # the driver restarted; a fresh backend object
    b = env.instances["gpu"]
    assert [c.tag for c in engine.stored_configs(ref.uid)["gpu-0"]] == ["blue"]
    assert await engine.prepare([ref]) == first
    assert b.calls == []  # nothing re-run: the state came from the checkpoint
    spec = (env.cdi_root / f"k8s.gpu.example.com-claim_{ref.uid}.json").read_text()
    assert "TAG=blue" in spec
    assert await engine.unprepare([ref]) == {ref.uid: ""}
    assert b.calls == [("unprepare", ref.uid, {"ifname": "net1"})]


async def test_claim_allocated_while_driver_down_and_device_gone(tmp_path):
    """docs/failure-modes.md#slices-while-the-driver-is-down:
    the driver died uncleanly; during the kubelet's grace period a claim got allocated
    to its devices. After the restart Prepare works for a device that still exists, and fails
    with a clear, per-claim error for one that has really gone."""
    env = Env(tmp_path, [("fake", lambda ctx: FakeBackend(ctx, names=("dev-0", "dev-1")))])
    await env.make_engine()
    # (driver down) the scheduler allocates two claims from the stale slice
    ok = env.add_claim("ok", [{"request": "gpu", "device": "dev-0"}])
    gone = env.add_claim("gone", [{"request": "gpu", "device": "dev-1"}])
    env.factories = [("fake", lambda ctx: FakeBackend(ctx, names=("dev-0",)))]  # dev-1 vanished
    engine = await env.make_engine()
    out = await engine.prepare([ok, gone])
    assert out[ok.uid].error == ""
    assert out[gone.uid].error.startswith("claim default/gone: device 'dev-1' in pool 'node-1' is not published")
    assert "removed" in out[gone.uid].error
    assert set(engine.checkpoint.claims) == {ok.uid}


class PartitionsOff(FakeBackend):
    """A partition-capable backend with its partition feature disabled: dra_create_partition
    returns None for every device. Prepare fails, so a rollback runs."""

    def __init__(self, ctx):
        super().__init__(ctx, names=("gpu-0",))
        self.destroyed: list = []

    @hookimpl
    async def dra_create_partition(self, ctx, device):
        return None

    @hookimpl
    def dra_destroy_partition(self, record):
        self.destroyed.append(record)
        raise RuntimeError("NVML: not supported (partition cleanup must not run)")

    @hookimpl
    async def dra_prepare(self, ctx, devices):
        self.calls.append(("prepare", ctx.claim.uid))
        if len(self.calls) == 1:
            raise RuntimeError("device busy")
        return PrepareResult()


async def test_partition_cleanup_never_entered_when_feature_disabled(tmp_path):
    """https://github.com/kubernetes-sigs/dra-driver-nvidia-gpu/issues/1452 (2):
    with the partition feature off, the cleanup of a partial prepare and the later
    unprepare never fall through into partition teardown (which would fail spuriously)."""
    env = Env(tmp_path, [("mig", lambda ctx: PartitionsOff(ctx))])
    engine = await env.make_engine()
    b = env.instances["mig"]
    ref = env.add_claim("c", [{"request": "g", "device": "gpu-0"}])
    out = await engine.prepare([ref])
    assert out[ref.uid].error == "claim default/c: backend mig: dra_prepare: device busy"
    assert engine.checkpoint.get(ref.uid) is None
    assert (await engine.prepare([ref]))[ref.uid].error == ""
    assert await engine.unprepare([ref]) == {ref.uid: ""}
    assert b.destroyed == []


async def test_retry_after_success_reuses_the_pool_allocation(tmp_path):
    """https://github.com/kubernetes-sigs/dranet/issues/296:
    a retried Prepare of an already prepared claim reuses the stored allocation; the
    backend's address pool is not asked again (no orphaned addresses)."""
    from test_engine_prepare import IpamBackend

    env = Env(tmp_path, [("ipam", lambda ctx: IpamBackend(ctx))])
    engine = await env.make_engine()
    b = env.instances["ipam"]
    b.fail_after_alloc = False
    ref = env.add_claim("net", [{"request": "nic", "device": "nic-0"}])
    first = await engine.prepare([ref])
    for _ in range(3):  # kubelet retries (e.g. after its own timeout) and a restarted driver
        assert await engine.prepare([ref]) == first
    engine = await env.make_engine()
    env.instances["ipam"].free = list(b.free)
    assert await engine.prepare([ref]) == first
    assert b.free == ["10.0.0.2", "10.0.0.3"]
    assert await engine.unprepare([ref]) == {ref.uid: ""}
    assert env.instances["ipam"].free[0] == "10.0.0.1"



async def test_cdi_names_from_awkward_hardware_ids(tmp_path):
    """https://github.com/cncf-tags/container-device-interface/issues/69:
    devices whose natural IDs are ``0``, ``MIG-GPU-abc/1/0``, ``gpu:0`` and a 300-character
    UUID chain get deterministic, escaped CDI names that the CDI grammar accepts; the spec's
    kind is vendor/class and the names are unique."""
    import json

    from dra_framework.cdi import parse_qualified_name
    from dra_framework.cdi.testing import assert_valid_cdi_dir

    long_id = "-".join(["GPU-6fa86616-0b9f-4c1e-9d3e-5f2a7c1b8e90"] * 7)[:300]
    names = ("0", "MIG-GPU-abc/1/0", "gpu:0", long_id)
    env = Env(tmp_path, [("fake", lambda ctx: FakeBackend(ctx, names=names))])
    engine = await env.make_engine()
    uid = "6fa86616-0b9f-4c1e-9d3e-5f2a7c1b8e90"
    ref = env.add_claim("c", [{"request": f"r{i}", "device": n} for i, n in enumerate(names)], uid=uid)
    out = await engine.prepare([ref])
    assert out[ref.uid].error == ""
    ids = [i for d in out[ref.uid].devices for i in d.cdi_device_ids]
    assert len(ids) == len(set(ids)) == 4
    for i in ids:
        vendor, cls, name = parse_qualified_name(i)
        assert (vendor, cls) == ("k8s.gpu.example.com", "claim") and "/" not in name and ":" not in name
    spec = json.loads((env.cdi_root / f"k8s.gpu.example.com-claim_{uid}.json").read_text())
    assert spec["kind"] == "k8s.gpu.example.com/claim"
    assert sorted(f"{spec['kind']}={d['name']}" for d in spec["devices"]) == sorted(ids)
    assert_valid_cdi_dir(env.cdi_root, allow_empty=False)
    env2 = Env(tmp_path / "again", [("fake", lambda ctx: FakeBackend(ctx, names=names))])
    engine2 = await env2.make_engine()
    env2.add_claim("c", [{"request": f"r{i}", "device": n} for i, n in enumerate(names)], uid=uid)
    again = await engine2.prepare([ref])
    assert [i for d in again[ref.uid].devices for i in d.cdi_device_ids] == ids  # deterministic


async def test_claim_level_edits_of_two_groups_are_merged_exactly(tmp_path):
    """https://github.com/kubernetes-sigs/dra-driver-nvidia-gpu/issues/1251:
    one claim, two requests whose backends both produce claim-level edits (a device node
    and env vars, one env var identical in both): all edits reach the spec, de-duplicated, in a
    deterministic order; nothing is overwritten."""
    import json

    from dra_framework.cdi.edits import DeviceNode

    class Group(FakeBackend):
        def __init__(self, ctx, names, node, own):
            super().__init__(ctx, names=names)
            self.node, self.own = node, own

        @hookimpl
        async def dra_prepare(self, ctx, devices):
            return PrepareResult(claim_edits=ContainerEdits(
                env={"IOMMU": "on", self.own: "1"}, device_nodes=(DeviceNode(path=self.node),)))

    env = Env(tmp_path, [("a", lambda ctx: Group(ctx, ("a-0",), "/dev/vfio/vfio", "GROUP_A")),
                         ("b", lambda ctx: Group(ctx, ("b-0",), "/dev/vfio/12", "GROUP_B"))])
    for node in ("dev/vfio/vfio", "dev/vfio/12"):  # host paths a spec names must exist under the host root
        (env.host_root / node).parent.mkdir(parents=True, exist_ok=True)
        (env.host_root / node).touch()
    engine = await env.make_engine()
    ref = env.add_claim("c", [{"request": "a", "device": "a-0"}, {"request": "b", "device": "b-0"}])
    assert (await engine.prepare([ref]))[ref.uid].error == ""
    spec = json.loads((env.cdi_root / f"k8s.gpu.example.com-claim_{ref.uid}.json").read_text())
    edits = spec["containerEdits"]
    assert edits["env"] == ["IOMMU=on", "GROUP_A=1", "GROUP_B=1"]
    assert [n["path"] for n in edits["deviceNodes"]] == ["/dev/vfio/vfio", "/dev/vfio/12"]
