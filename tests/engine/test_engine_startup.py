"""Start-up: reboot detection (https://github.com/kubernetes-sigs/dra-driver-nvidia-gpu/issues/951),
CDI directory reconcile, partition reconcile."""
from __future__ import annotations

import json

from engine_support import VENDOR, Env, FakeBackend

from dra_framework import hookimpl
from dra_framework.cdi.edits import ContainerEdits
from dra_framework.cdi.testing import assert_valid_cdi_dir
from dra_framework.engine import PREPARE_COMPLETED
from dra_framework.engine.checkpoint import encode


async def test_boot_id_change_cleans_pre_reboot_entries(tmp_path):
    from dra_example_backend import ExampleBackend, Options

    class Ex(ExampleBackend):
        destroyed: list = []

        @hookimpl
        def dra_destroy_partition(self, record):
            Ex.destroyed.append(record)
            super().dra_destroy_partition(record)

    env = Env(tmp_path, [("fake", lambda ctx: FakeBackend(ctx)), ("example", lambda ctx: Ex(Options(), ctx))])
    engine = await env.make_engine(boot_id="boot-1")
    x = env.add_claim("x", [{"request": "gpu", "device": "dev-0"}, {"request": "h", "device": "acc-0-half-0"}])
    assert (await engine.prepare([x]))[x.uid].error == ""
    fake = env.instances["fake"]

    # reboot: /var/run/cdi is a tmpfs and is empty again
    for f in env.cdi_root.glob("*.json"):
        f.unlink()
    engine = await env.make_engine(boot_id="boot-2")
    fake = env.instances["fake"]
    # files cleaned, hardware teardown skipped (no destroy_partition), entry dropped
    assert fake.calls == [("unprepare", x.uid, True, {}, {"devices": ["dev-0"]}, False)]
    assert Ex.destroyed == []
    assert engine.checkpoint.claims == {}
    # the device is free for another claim, and the kubelet's re-prepare of X works from scratch
    y = env.add_claim("y", [{"request": "gpu", "device": "dev-1"}])
    assert (await engine.prepare([y]))[y.uid].error == ""
    out = await engine.prepare([x])
    assert out[x.uid].error == ""
    assert engine.checkpoint.get(x.uid)["bootId"] == "boot-2"
    assert [c[0] for c in fake.calls] == ["unprepare", "prepare", "prepare"]
    assert await engine.unprepare([x]) == {x.uid: ""}


async def test_pre_reboot_entry_does_not_hold_its_device(fake_env):
    """Even if its clean-up at start-up failed, a pre-boot entry holds no device."""
    env = fake_env
    engine = await env.make_engine(boot_id="boot-1")
    x = env.add_claim("x", [{"request": "gpu", "device": "dev-0"}])
    await engine.prepare([x])
    engine = await env.make_engine(boot_id="boot-2", start=False)
    env.instances["fake"].fail_unprepare = RuntimeError("cannot clean")
    await engine.start()
    assert engine.checkpoint.get(x.uid) is not None  # kept for retry
    y = env.add_claim("y", [{"request": "gpu", "device": "dev-0"}])
    assert (await engine.prepare([y]))[y.uid].error == ""
    env.instances["fake"].fail_unprepare = None
    assert (await engine.prepare([x]))[x.uid].error != ""  # now y holds dev-0 in this boot
    assert "already prepared for claim default/y" in (await engine.prepare([x]))[x.uid].error


async def test_legacy_entry_without_boot_id_counts_as_prepared(fake_env):
    env = fake_env
    engine = await env.make_engine(boot_id="boot-1")
    x = env.add_claim("x", [{"request": "gpu", "device": "dev-0"}])
    first = await engine.prepare([x])
    claims = {k: {kk: vv for kk, vv in v.items() if kk != "bootId"} for k, v in engine.checkpoint.claims.items()}
    env.cp_path.write_bytes(encode(claims, ""))
    engine = await env.make_engine(boot_id="boot-2")
    assert engine.checkpoint.get(x.uid)["state"] == PREPARE_COMPLETED
    assert await engine.prepare([x]) == first
    assert env.instances["fake"].calls == []


async def test_cdi_directory_reconciled_at_start(fake_env):
    env = fake_env
    engine = await env.make_engine()
    keep = env.add_claim("keep", [{"request": "gpu", "device": "dev-0"}])
    await engine.prepare([keep])
    keep_file = env.cdi_root / f"{VENDOR}-claim_{keep.uid}.json"
    good = keep_file.read_bytes()
    keep_file.unlink()  # lost (e.g. someone cleaned /var/run/cdi)
    stale_uid = "6fa86616-0000-4000-8000-000000000001"
    env.cdi().write_claim_spec(stale_uid, [("dev-1", None, ContainerEdits(env={"A": "1"}))])
    other_vendor = env.cdi_root / "k8s.other.com-claim_6fa86616-0000-4000-8000-000000000002.json"
    other_vendor.write_text(json.dumps({"cdiVersion": "0.3.0", "kind": "k8s.other.com/claim",
                                        "devices": [{"name": "x", "containerEdits": {"env": ["A=1"]}}]}))
    (env.cdi_root / f".{VENDOR}-claim_{stale_uid}.json.123.tmp").write_text("partial")

    engine = await env.make_engine()
    assert keep_file.read_bytes() == good  # restored from the checkpoint
    assert sorted(env.cdi_files()) == sorted([keep_file.name, other_vendor.name])  # stale one removed
    assert not list(env.cdi_root.glob(".*.tmp"))
    assert_valid_cdi_dir(env.cdi_root)
    assert env.instances["fake"].calls == []


async def test_reconcile_partitions_gets_owned_records_and_may_fail(tmp_path):
    got = {}

    class P(FakeBackend):
        @hookimpl
        async def dra_create_partition(self, ctx, device):
            return {"dev": device.name}

        @hookimpl
        def dra_reconcile_partitions(self, owned):
            got[self.ctx.backend_name] = list(owned)
            raise RuntimeError("found 7 unknown MIG devices; policy=refuse")

    env = Env(tmp_path, [("p", lambda ctx: P(ctx))])
    engine = await env.make_engine()
    assert got == {"p": []}
    x = env.add_claim("x", [{"request": "gpu", "device": "dev-0"}])
    assert (await engine.prepare([x]))[x.uid].error == ""
    engine = await env.make_engine()  # raising is logged, the driver keeps serving
    assert got == {"p": [{"dev": "dev-0"}]}
    assert (await engine.prepare([x]))[x.uid].error == ""
