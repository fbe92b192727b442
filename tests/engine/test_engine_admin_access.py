"""Admin-access results never create, destroy or hold a partition (example backend)."""
from __future__ import annotations


async def test_admin_access_on_a_prepared_partition(example_env):
    env = example_env
    engine = await env.make_engine()
    marker = env.state_root / "example" / "partitions" / "acc-0-half-0"
    work = env.add_claim("work", [{"request": "w", "device": "acc-0-half-0"}])
    mon = env.add_claim("mon", [{"request": "m", "device": "acc-0-half-0", "adminAccess": True}],
                        namespace="monitoring")
    assert (await engine.prepare([work]))[work.uid].error == ""
    assert (await engine.prepare([mon]))[mon.uid].error == ""
    assert marker.read_text() == work.uid
    assert engine.checkpoint.get(mon.uid)["partitions"] == []
    assert await engine.unprepare([mon]) == {mon.uid: ""}
    assert marker.read_text() == work.uid
    # a second workload claim is still refused: the admin claim never released (or held) it
    other = env.add_claim("other", [{"request": "w", "device": "acc-0-half-0"}])
    assert "already prepared for claim default/work" in (await engine.prepare([other]))[other.uid].error
    assert await engine.unprepare([work]) == {work.uid: ""}
    assert not marker.exists()


async def test_backend_changing_an_admin_device_fails_the_claim_clearly(tmp_path):
    """A backend that would change a device for an admin-access-only call (it announces a side
    effect with ctx.record) fails that claim before the change; nothing is left behind."""
    from engine_support import Env, crash_factories

    env = Env(tmp_path, crash_factories())
    engine = await env.make_engine()
    mon = env.add_claim("mon", [{"request": "m", "device": "dev-0", "adminAccess": True}], namespace="monitoring")
    err = (await engine.prepare([mon]))[mon.uid].error
    assert "ctx.record('bound') for admin-access devices" in err and "must not change a device" in err
    assert not (env.state_root / "crash" / "bound" / "dev-0").exists()
    assert engine.checkpoint.get(mon.uid) is None and env.cdi_files() == []


async def test_lost_checkpoint_admin_claim_does_not_destroy_the_workload_partition(example_env):
    """After a lost checkpoint both claims are recovered from their CDI specs with the partition
    (its creator is unknown now): unpreparing the admin claim leaves it, the last claim's
    unprepare destroys it."""
    env = example_env
    engine = await env.make_engine()
    marker = env.state_root / "example" / "partitions" / "acc-0-half-0"
    work = env.add_claim("work", [{"request": "w", "device": "acc-0-half-0"}])
    mon = env.add_claim("mon", [{"request": "m", "device": "acc-0-half-0", "adminAccess": True}],
                        namespace="monitoring")
    assert (await engine.prepare([work]))[work.uid].error == ""
    assert (await engine.prepare([mon]))[mon.uid].error == ""
    env.cp_path.unlink()
    engine = await env.make_engine()
    assert engine.checkpoint.get(mon.uid)["state"] == "Recovered" and marker.exists()
    assert await engine.unprepare([mon]) == {mon.uid: ""}
    assert marker.read_text() == work.uid
    assert await engine.unprepare([work]) == {work.uid: ""}
    assert not marker.exists() and engine.checkpoint.claims == {}
