"""PrepareEngine: prepare/unprepare flow, idempotency, concurrency, exclusivity, rollback."""
from __future__ import annotations

import asyncio
import json

import pytest
from engine_support import DRIVER, NODE, Env, FakeBackend, new_uid, wait_for

from dra_framework import hookimpl
from dra_framework.cdi.testing import assert_valid_cdi_dir
from dra_framework.engine import PREPARE_COMPLETED
from dra_framework.kubelet.types import ClaimRef, DRAEngine
from dra_framework.model import ContainerEdits, DeviceStatus, NetworkData, PreparedDeviceEdits, PrepareResult


def spec_of(env: Env, uid: str) -> dict:
    return json.loads((env.cdi_root / f"k8s.gpu.example.com-claim_{uid}.json").read_text())


# --- basic flow with the example backend ---------------------------------------------------------


async def test_prepare_and_unprepare_example_backend(example_env):
    env = example_env
    engine = await env.make_engine()
    assert isinstance(engine, DRAEngine)
    ref = env.add_claim("c1", [{"request": "acc", "device": "acc-0"},
                               {"request": "half", "device": "acc-1-half-0"}],
                        configs=[{"source": "FromClaim", "requests": ["half"], "opaque": {
                            "driver": DRIVER, "parameters": {"apiVersion": "example.dra.dev/v1",
                                                             "kind": "ExampleConfig", "mode": "fast"}}}])
    out = await engine.prepare([ref])
    assert set(out) == {ref.uid}
    res = out[ref.uid]
    assert res.error == ""
    assert [(d.requests, d.pool, d.device) for d in res.devices] == [(["acc"], NODE, "acc-0"),
                                                                     (["half"], NODE, "acc-1-half-0")]
    assert res.devices[0].cdi_device_ids == [f"k8s.gpu.example.com/claim={ref.uid}-acc-0"]
    specs = assert_valid_cdi_dir(env.cdi_root, allow_empty=False)
    assert len(specs) == 1
    spec = spec_of(env, ref.uid)
    envs = {d["name"]: d["containerEdits"]["env"] for d in spec["devices"]}
    assert "EXAMPLE_MODE=fast" in envs[f"{ref.uid}-acc-1-half-0"]
    assert "EXAMPLE_MODE=normal" in envs[f"{ref.uid}-acc-0"]
    entry = engine.checkpoint.get(ref.uid)
    assert entry["state"] == PREPARE_COMPLETED
    assert entry["partitions"] == [{"backend": "example", "device": "acc-1-half-0",
                                    "record": {"device": "acc-1-half-0"}}]
    marker = env.state_root / "example" / "partitions" / "acc-1-half-0"
    assert marker.read_text() == ref.uid

    assert await engine.unprepare([ref]) == {ref.uid: ""}
    assert not marker.exists()
    assert env.cdi_files() == []
    assert engine.checkpoint.get(ref.uid) is None


async def test_unknown_uid_unprepare_touches_nothing(fake_env):
    engine = await fake_env.make_engine()
    ref = ClaimRef(new_uid(), "default", "never-prepared")
    assert await engine.unprepare([ref]) == {ref.uid: ""}
    assert fake_env.instances["fake"].calls == []
    assert not fake_env.cp_path.exists()
    assert fake_env.cdi_files() == []


# --- idempotency -------------------------------------------------------------------------------


async def test_prepare_is_idempotent_and_shared_claim_torn_down_once(fake_env):
    engine = await fake_env.make_engine()
    backend = fake_env.instances["fake"]
    ref = fake_env.add_claim("shared", [{"request": "gpu", "device": "dev-0"}])
    first = await engine.prepare([ref])
    second = await engine.prepare([ref])  # a second pod using the same claim / kubelet retry
    third = await engine.prepare([ref, ref])  # duplicate in one call
    assert first == second == third
    assert [c[0] for c in backend.calls] == ["prepare"]
    assert await engine.unprepare([ref]) == {ref.uid: ""}
    assert await engine.unprepare([ref]) == {ref.uid: ""}
    assert [c[0] for c in backend.calls] == ["prepare", "unprepare"]


async def test_cdi_spec_re_ensured_on_re_prepare(fake_env):
    engine = await fake_env.make_engine()
    ref = fake_env.add_claim("c", [{"request": "gpu", "device": "dev-0"}])
    first = await engine.prepare([ref])
    path = fake_env.cdi_root / f"k8s.gpu.example.com-claim_{ref.uid}.json"
    good = path.read_bytes()
    path.unlink()
    assert await engine.prepare([ref]) == first
    assert path.read_bytes() == good
    path.write_text('{"kind": "k8s.gpu.example.com/claim", "devices": []}')  # damaged / stale content
    assert await engine.prepare([ref]) == first
    assert path.read_bytes() == good
    assert len(fake_env.instances["fake"].calls) == 1
    assert_valid_cdi_dir(fake_env.cdi_root, allow_empty=False)


# --- per-claim errors ---------------------------------------------------------------------------


async def test_claim_errors_are_per_claim(fake_env):
    engine = await fake_env.make_engine()
    good = fake_env.add_claim("good", [{"request": "gpu", "device": "dev-0"}])
    unknown = fake_env.add_claim("unknown", [{"request": "gpu", "device": "dev-9"}])
    unalloc = fake_env.add_claim("unalloc", [{"request": "gpu", "device": "dev-1"}], allocated=False)
    missing = ClaimRef(new_uid(), "default", "missing")
    replaced = ClaimRef(new_uid(), "default", "good")  # same name, other UID (docs/failure-modes.md#claim-re-created-under-the-same-name)
    out = await engine.prepare([good, unknown, unalloc, missing, replaced])
    assert set(out) == {good.uid, unknown.uid, unalloc.uid, missing.uid, replaced.uid}
    assert out[good.uid].error == ""
    assert "claim default/unknown: device 'dev-9' in pool 'node-1' is not published" in out[unknown.uid].error
    assert out[unalloc.uid].error == "claim default/unalloc: not allocated"
    assert out[missing.uid].error == "claim default/missing: ResourceClaim not found"
    assert "got replaced" in out[replaced.uid].error and good.uid in out[replaced.uid].error
    # failures left nothing behind
    assert set(engine.checkpoint.claims) == {good.uid}
    assert fake_env.cdi_files() == [f"k8s.gpu.example.com-claim_{good.uid}.json"]


async def test_results_of_other_drivers_ignored_and_subrequest_reduced(tmp_path):
    seen = []

    class B(FakeBackend):
        @hookimpl
        async def dra_prepare(self, ctx, devices):
            seen.extend((d.request, d.subrequest) for d in devices)
            return PrepareResult()

    env = Env(tmp_path, [("b", lambda ctx: B(ctx))])
    engine = await env.make_engine()
    ref = env.add_claim("c", [{"request": "gpu/large", "device": "dev-0"},
                              {"request": "nic", "device": "eth0", "driver": "other.example.com"}])
    out = await engine.prepare([ref])
    assert out[ref.uid].error == ""
    assert [(d.requests, d.device) for d in out[ref.uid].devices] == [(["gpu"], "dev-0")]
    assert seen == [("gpu", "gpu/large")]
    # a device with empty edits still gets a valid CDI device (inert env var)
    assert_valid_cdi_dir(env.cdi_root, allow_empty=False)


# --- concurrency (https://github.com/kubernetes-sigs/dra-driver-nvidia-gpu/pull/374) ------------


async def test_claims_are_serialised_per_claim_not_globally(fake_env):
    engine = await fake_env.make_engine()
    backend = fake_env.instances["fake"]
    b_done = asyncio.Event()

    async def gate(ctx, devices):
        if devices[0].name == "dev-0":  # claim A waits until claim B has been prepared
            await asyncio.wait_for(b_done.wait(), 5)

    backend.before_prepare = gate
    a = fake_env.add_claim("a", [{"request": "gpu", "device": "dev-0"}])
    b = fake_env.add_claim("b", [{"request": "gpu", "device": "dev-1"}])
    task_a = asyncio.ensure_future(engine.prepare([a]))  # separate kubelet calls
    await wait_for(lambda: len(backend.calls) == 1)
    out_b = await asyncio.wait_for(engine.prepare([b]), 5)
    assert out_b[b.uid].error == ""
    b_done.set()
    out_a = await asyncio.wait_for(task_a, 5)
    assert out_a[a.uid].error == ""


async def test_many_concurrent_claims(fake_env):
    fake_env.factories = [("fake", lambda ctx: FakeBackend(ctx, names=[f"d-{i}" for i in range(40)]))]
    engine = await fake_env.make_engine()
    refs = [fake_env.add_claim(f"c{i}", [{"request": "r", "device": f"d-{i}"}]) for i in range(40)]
    outs = await asyncio.gather(*(engine.prepare([r]) for r in refs[:20]), engine.prepare(refs[20:]))
    merged = {k: v for o in outs for k, v in o.items()}
    assert all(v.error == "" for v in merged.values()) and len(merged) == 40
    assert engine.prepared_claim_count() == 40
    res = await asyncio.gather(*(engine.unprepare([r]) for r in refs))
    assert all(v == "" for r in res for v in r.values())
    assert engine.checkpoint.claims == {} and fake_env.cdi_files() == []


# --- exclusivity (https://github.com/kubernetes-sigs/dra-example-driver/issues/263) ------------


async def test_device_held_by_other_claim_is_refused_with_its_name(fake_env):
    engine = await fake_env.make_engine()
    x = fake_env.add_claim("x", [{"request": "gpu", "device": "dev-0"}])
    y = fake_env.add_claim("y", [{"request": "gpu", "device": "dev-0"}])
    assert (await engine.prepare([x]))[x.uid].error == ""
    err = (await engine.prepare([y]))[y.uid].error
    assert err.startswith("claim default/y: device 'dev-0'")
    assert f"already prepared for claim default/x ({x.uid})" in err
    assert engine.checkpoint.get(y.uid) is None
    assert await engine.unprepare([x]) == {x.uid: ""}
    assert (await engine.prepare([y]))[y.uid].error == ""


async def test_concurrent_prepares_of_one_device_only_one_wins(fake_env):
    engine = await fake_env.make_engine()
    refs = [fake_env.add_claim(f"c{i}", [{"request": "gpu", "device": "dev-1"}]) for i in range(5)]
    outs = await asyncio.gather(*(engine.prepare([r]) for r in refs))
    errors = [o[r.uid].error for o, r in zip(outs, refs, strict=True)]
    assert sum(1 for e in errors if e == "") == 1
    assert all("already" in e for e in errors if e)


async def test_shareable_device_and_admin_access_are_exempt(fake_env):
    engine = await fake_env.make_engine()
    s1 = fake_env.add_claim("s1", [{"request": "gpu", "device": "dev-shared", "shareID": new_uid()}])
    s2 = fake_env.add_claim("s2", [{"request": "gpu", "device": "dev-shared", "shareID": new_uid()}])
    x = fake_env.add_claim("x", [{"request": "gpu", "device": "dev-0"}])
    admin = fake_env.add_claim("admin", [{"request": "mon", "device": "dev-0", "adminAccess": True}],
                               namespace="monitoring")
    out = await engine.prepare([s1, s2, x, admin])
    assert {k: v.error for k, v in out.items()} == {s1.uid: "", s2.uid: "", x.uid: "", admin.uid: ""}
    assert out[s1.uid].devices[0].share_id is not None
    assert out[s1.uid].devices[0].cdi_device_ids[0].endswith("." + out[s1.uid].devices[0].share_id)
    # and an admin-access holder does not block a normal claim either
    assert await engine.unprepare([x]) == {x.uid: ""}
    y = fake_env.add_claim("y", [{"request": "gpu", "device": "dev-0"}])
    assert (await engine.prepare([y]))[y.uid].error == ""
    assert_valid_cdi_dir(fake_env.cdi_root, allow_empty=False)


async def test_recreated_claim_with_same_name_is_independent(fake_env):
    """docs/failure-modes.md#claim-re-created-under-the-same-name:
    ns/foo UID1 prepared, deleted and re-created as UID2: Prepare(UID2) works before
    Unprepare(UID1), and Unprepare(UID1) tears down only UID1."""
    engine = await fake_env.make_engine()
    old = fake_env.add_claim("foo", [{"request": "gpu", "device": "dev-0"}])
    assert (await engine.prepare([old]))[old.uid].error == ""
    new = fake_env.add_claim("foo", [{"request": "gpu", "device": "dev-1"}])
    assert (await engine.prepare([new]))[new.uid].error == ""
    assert await engine.unprepare([old]) == {old.uid: ""}
    assert set(engine.checkpoint.claims) == {new.uid}
    assert fake_env.cdi_files() == [f"k8s.gpu.example.com-claim_{new.uid}.json"]


# --- rollback ----------------------------------------------------------------------------------


class IpamBackend(FakeBackend):
    """Allocates an address from a pool per prepare (https://github.com/kubernetes-sigs/dranet/issues/296):
    recorded in the journal before
    it is taken; rollback returns it from the journal alone."""

    def __init__(self, ctx):
        super().__init__(ctx, names=("nic-0",))
        self.free = ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
        self.fail_after_alloc = True

    @hookimpl
    async def dra_prepare(self, ctx, devices):
        ip = self.free[0]
        await ctx.record("ip", ip)
        self.free.remove(ip)
        if self.fail_after_alloc:
            raise RuntimeError("link setup failed")
        return PrepareResult(devices={"nic-0": PreparedDeviceEdits(ContainerEdits(env={"IP": ip}))},
                             teardown={"ip": ip})

    @hookimpl
    def dra_unprepare(self, stored):
        ip = stored.teardown.get("ip") or stored.journal.get("ip")
        self.calls.append(("unprepare", stored.completed, dict(stored.journal)))
        if ip and ip not in self.free:
            self.free.insert(0, ip)


async def test_failed_prepare_rolls_back_from_journal(tmp_path):
    env = Env(tmp_path, [("ipam", lambda ctx: IpamBackend(ctx))])
    engine = await env.make_engine()
    b = env.instances["ipam"]
    ref = env.add_claim("net", [{"request": "nic", "device": "nic-0"}])
    out = await engine.prepare([ref])
    assert out[ref.uid].error == "claim default/net: backend ipam: dra_prepare: link setup failed"
    assert b.calls == [("unprepare", False, {"ip": "10.0.0.1"})]
    assert b.free == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]  # nothing leaked
    assert engine.checkpoint.get(ref.uid) is None and env.cdi_files() == []
    b.fail_after_alloc = False
    out = await engine.prepare([ref])  # kubelet retry
    assert out[ref.uid].error == ""
    assert b.free == ["10.0.0.2", "10.0.0.3"]
    assert await engine.unprepare([ref]) == {ref.uid: ""}
    assert b.free == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]


class PartitionBackend(FakeBackend):
    """Two-step partition creation (MIG GI then CI,
    https://github.com/kubernetes-sigs/dra-driver-nvidia-gpu/issues/1452): step 2 can fail."""

    def __init__(self, ctx):
        super().__init__(ctx, names=("gpu-0", "gpu-0-mig-a", "gpu-0-mig-b"))
        self.live: set[str] = set()
        self.fail_ci_for: set[str] = set()
        self.destroyed: list[dict] = []

    @hookimpl
    async def dra_create_partition(self, ctx, device):
        if "mig" not in device.name:
            return None
        rec = {"parent": "gpu-0", "gi": device.name + "/gi"}
        await ctx.record(f"gi/{device.name}", rec)
        self.live.add(rec["gi"])
        if device.name in self.fail_ci_for:
            raise RuntimeError(f"creating compute instance for {device.name}: Insufficient Resources")
        await ctx.record(f"ci/{device.name}", {**rec, "ci": device.name + "/ci"})
        self.live.add(device.name + "/ci")
        return {**rec, "ci": device.name + "/ci"}

    @hookimpl
    def dra_unprepare(self, stored):
        self.calls.append(("unprepare", stored.completed, sorted(stored.journal)))

    @hookimpl
    def dra_destroy_partition(self, record):
        self.destroyed.append(dict(record))
        if record.get("pending"):  # half-created: what the create journaled says what exists
            for rec in record["journal"].values():
                self.live.discard(rec.get("ci"))
                self.live.discard(rec["gi"])
            return
        self.live.discard(record["ci"])
        self.live.discard(record["gi"])


async def test_partition_failure_half_way_rolls_back(tmp_path):
    env = Env(tmp_path, [("mig", lambda ctx: PartitionBackend(ctx))])
    engine = await env.make_engine()
    b = env.instances["mig"]
    b.fail_ci_for = {"gpu-0-mig-b"}
    ref = env.add_claim("m", [{"request": "a", "device": "gpu-0-mig-a"}, {"request": "b", "device": "gpu-0-mig-b"}])
    out = await engine.prepare([ref])
    assert "Insufficient Resources" in out[ref.uid].error
    assert b.live == set()
    # the half-created partition is destroyed from the framework's pending record, then the other
    assert b.destroyed == [{"device": "gpu-0-mig-b", "pending": True,
                            "journal": {"gi/gpu-0-mig-b": {"parent": "gpu-0", "gi": "gpu-0-mig-b/gi"}}},
                           {"parent": "gpu-0", "gi": "gpu-0-mig-a/gi", "ci": "gpu-0-mig-a/ci"}]
    assert engine.checkpoint.get(ref.uid) is None
    b.fail_ci_for = set()
    assert (await engine.prepare([ref]))[ref.uid].error == ""
    assert b.live == {"gpu-0-mig-a/gi", "gpu-0-mig-a/ci", "gpu-0-mig-b/gi", "gpu-0-mig-b/ci"}
    assert await engine.unprepare([ref]) == {ref.uid: ""}
    assert b.live == set()


async def test_failed_unprepare_keeps_entry_for_retry(fake_env):
    engine = await fake_env.make_engine()
    b = fake_env.instances["fake"]
    ref = fake_env.add_claim("c", [{"request": "gpu", "device": "dev-0"}])
    await engine.prepare([ref])
    b.fail_unprepare = RuntimeError("device busy")
    err = (await engine.unprepare([ref]))[ref.uid]
    assert err == "claim default/c: backend fake: dra_unprepare: device busy"
    assert engine.checkpoint.get(ref.uid) is not None
    b.fail_unprepare = None
    assert await engine.unprepare([ref]) == {ref.uid: ""}
    assert engine.checkpoint.get(ref.uid) is None
    teardowns = [c for c in b.calls if c[0] == "unprepare"]
    assert teardowns[-1][2:] == (True, {}, {"devices": ["dev-0"]}, True)


async def test_rollback_continues_across_backends(tmp_path):
    class Failing(FakeBackend):
        @hookimpl
        async def dra_prepare(self, ctx, devices):
            await ctx.record("touched", True)
            raise RuntimeError("bind failed")

    env = Env(tmp_path, [("a", lambda ctx: FakeBackend(ctx, names=("a-0",))),
                         ("b", lambda ctx: Failing(ctx, names=("b-0",)))])
    engine = await env.make_engine()
    ref = env.add_claim("c", [{"request": "x", "device": "a-0"}, {"request": "y", "device": "b-0"}])
    out = await engine.prepare([ref])
    assert out[ref.uid].error == "claim default/c: backend b: dra_prepare: bind failed"
    a, b = env.instances["a"], env.instances["b"]
    assert a.calls[-1][:3] == ("unprepare", ref.uid, False)
    assert b.calls[-1][:4] == ("unprepare", ref.uid, False, {"touched": True})
    assert engine.checkpoint.get(ref.uid) is None


async def test_claim_edits_of_backends_conflict_is_claim_error(tmp_path):
    class WithClaimEdits(FakeBackend):
        def __init__(self, ctx, names, value):
            super().__init__(ctx, names=names)
            self.value = value

        @hookimpl
        async def dra_prepare(self, ctx, devices):
            return PrepareResult(claim_edits=ContainerEdits(env={"TOPOLOGY": self.value}))

    env = Env(tmp_path, [("a", lambda ctx: WithClaimEdits(ctx, ("a-0",), "2x2")),
                         ("b", lambda ctx: WithClaimEdits(ctx, ("b-0",), "2x4"))])
    engine = await env.make_engine()
    ref = env.add_claim("c", [{"request": "x", "device": "a-0"}, {"request": "y", "device": "b-0"}])
    out = await engine.prepare([ref])
    assert "claim default/c: building the CDI spec failed" in out[ref.uid].error
    assert "TOPOLOGY" in out[ref.uid].error
    assert engine.checkpoint.get(ref.uid) is None and env.cdi_files() == []


async def test_device_status_written_and_cleared(fake_env):
    engine = await fake_env.make_engine()
    fake_env.instances["fake"].status = DeviceStatus(
        data={"uuid": "GPU-1"}, network_data=NetworkData(interface_name="eth1", ips=["10.1.0.5/24"]),
        conditions=[{"type": "Ready", "status": "True"}])
    ref = fake_env.add_claim("c", [{"request": "gpu", "device": "dev-0"}])
    assert (await engine.prepare([ref]))[ref.uid].error == ""
    (claim, devices), = fake_env.status_writes
    assert claim.uid == ref.uid
    assert devices[0]["driver"] == DRIVER and devices[0]["pool"] == NODE and devices[0]["device"] == "dev-0"
    assert devices[0]["data"] == {"uuid": "GPU-1"}
    assert devices[0]["networkData"] == {"interfaceName": "eth1", "ips": ["10.1.0.5/24"]}
    cond = devices[0]["conditions"][0]
    assert cond["type"] == "Ready" and cond["reason"] and cond["lastTransitionTime"].endswith("Z")
    await engine.unprepare([ref])
    assert fake_env.status_writes[-1][1] == []


async def test_status_write_failure_rolls_back(fake_env):
    engine = await fake_env.make_engine()
    fake_env.instances["fake"].status = DeviceStatus(data={"a": 1})

    async def broken(claim, devices):
        if devices:
            raise RuntimeError("forbidden: resourceclaims/driver")
    engine.write_status = broken
    ref = fake_env.add_claim("c", [{"request": "gpu", "device": "dev-0"}])
    out = await engine.prepare([ref])
    assert "writing ResourceClaim.status.devices failed: forbidden" in out[ref.uid].error
    assert engine.checkpoint.get(ref.uid) is None and fake_env.cdi_files() == []


async def test_metrics_sink(fake_env):
    class Sink:
        def __init__(self):
            self.events = []

        def observe_prepare(self, s, r=None):
            self.events.append(("prepare", r))

        def observe_unprepare(self, s, r=None):
            self.events.append(("unprepare", r))

        def inflight(self, d, op="prepare"):
            self.events.append(("inflight", op, d))

        def set_prepared_claims(self, n):
            self.events.append(("prepared", n))

    sink = Sink()
    engine = await fake_env.make_engine(metrics=sink)
    ok = fake_env.add_claim("ok", [{"request": "gpu", "device": "dev-0"}])
    bad = fake_env.add_claim("bad", [{"request": "gpu", "device": "nope"}])
    await engine.prepare([ok, bad])
    await engine.unprepare([ok])
    assert ("prepare", None) in sink.events and ("prepare", "unknown_device") in sink.events
    assert ("unprepare", None) in sink.events
    assert ("prepared", 1) in sink.events and [e for e in sink.events if e[0] == "prepared"][-1] == ("prepared", 0)
    assert sum(e[2] for e in sink.events if e[0] == "inflight") == 0


async def test_cancelled_call_still_completes_claim(fake_env):
    """A kubelet timeout cancels the RPC; the claim still finishes (or rolls back) in the
    background, so the retry finds a consistent state."""
    engine = await fake_env.make_engine()
    b = fake_env.instances["fake"]
    release = asyncio.Event()

    async def gate(ctx, devices):
        await release.wait()
    b.before_prepare = gate
    ref = fake_env.add_claim("c", [{"request": "gpu", "device": "dev-0"}])
    call = asyncio.ensure_future(engine.prepare([ref]))
    await wait_for(lambda: len(b.calls) == 1)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    release.set()
    await engine.drain()
    assert engine.checkpoint.get(ref.uid)["state"] == PREPARE_COMPLETED
    out = await engine.prepare([ref])
    assert out[ref.uid].error == "" and len(b.calls) == 1


async def test_invalid_cdi_content_rolls_back_completed_claim(tmp_path):
    """The CDI spec is written while PrepareCompleted commits; if the writer refuses the content
    the claim is rolled back all the same."""
    from dra_framework.model import Mount

    class BadEdits(FakeBackend):
        @hookimpl
        async def dra_prepare(self, ctx, devices):
            return PrepareResult(devices={devices[0].name: PreparedDeviceEdits(ContainerEdits(
                mounts=(Mount(host_path="relative/path", container_path="/x"),)))}, teardown={"t": 1})

    env = Env(tmp_path, [("b", lambda ctx: BadEdits(ctx))])
    engine = await env.make_engine()
    ref = env.add_claim("c", [{"request": "gpu", "device": "dev-0"}])
    out = await engine.prepare([ref])
    assert "claim default/c: writing the CDI spec failed" in out[ref.uid].error
    assert engine.checkpoint.get(ref.uid) is None and env.cdi_files() == []
    assert env.instances["b"].calls[-1][0] == "unprepare"


async def test_janitor_sweeps_cdi_spec_left_by_failed_removal(fake_env):
    from dra_framework.engine import Janitor
    engine = await fake_env.make_engine()
    ref = fake_env.add_claim("c", [{"request": "gpu", "device": "dev-0"}])
    await engine.prepare([ref])
    spec = fake_env.cdi_root / f"k8s.gpu.example.com-claim_{ref.uid}.json"
    content = spec.read_bytes()
    assert await engine.unprepare([ref]) == {ref.uid: ""}
    spec.write_bytes(content)  # as if the unlink had failed
    spec.chmod(0o644)
    assert await Janitor(engine).run_once() == []
    assert fake_env.cdi_files() == []


async def test_through_the_kubelet_socket():
    """The engine behind the real PluginServer, called with the kubelet-like client (v1 and
    v1beta1)."""
    import shutil
    import tempfile

    from dra_framework.kubelet import client
    from dra_framework.kubelet.server import PluginServer

    short = tempfile.mkdtemp(prefix="eng", dir="/tmp")  # unix socket paths are limited to 107 bytes
    fake_env = Env(short, [("fake", lambda ctx: FakeBackend(ctx, names=("dev-0", "dev-1", "dev-shared"),
                                                            shareable=("dev-shared",)))])
    engine = await fake_env.make_engine()
    (fake_env.kubelet_root / "plugins_registry").mkdir(parents=True, exist_ok=True)
    server = PluginServer(DRIVER, engine, kubelet_root=str(fake_env.kubelet_root))
    await server.start()
    try:
        a = fake_env.add_claim("a", [{"request": "gpu/big", "device": "dev-0"}])
        s = fake_env.add_claim("s", [{"request": "gpu", "device": "dev-shared", "shareID": new_uid()}])
        bad = fake_env.add_claim("bad", [{"request": "gpu", "device": "dev-0"}])
        out = await client.prepare(server.paths.dra, [a, s, bad], version="v1")
        assert out[a.uid].error == "" and out[a.uid].devices[0].requests == ["gpu"]
        assert out[s.uid].devices[0].share_id is not None
        assert "for claim default/a (" in out[bad.uid].error
        beta = await client.prepare(server.paths.dra, [s], version="v1beta1")
        assert beta[s.uid].devices[0].share_id is None and beta[s.uid].devices[0].device == "dev-shared"
        assert await client.unprepare(server.paths.dra, [a, s, bad]) == {a.uid: "", s.uid: "", bad.uid: ""}
        assert engine.checkpoint.claims == {}
    finally:
        await server.stop()
        shutil.rmtree(short, ignore_errors=True)
