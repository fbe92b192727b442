"""An unprepare that fails half-way leaves an entry a later prepare redoes, never reuses."""
from __future__ import annotations

import pytest
from engine_support import CrashBackend, Env

from dra_framework import hookimpl


class FlakyBackend(CrashBackend):
    """CrashBackend whose ``fail`` hook ("dra_unprepare" or "dra_destroy_partition") fails once,
    after doing its work (the half-way point)."""

    fail: str = ""

    def _maybe_fail(self, hook: str) -> None:
        if FlakyBackend.fail == hook:
            FlakyBackend.fail = ""
            raise OSError(f"{hook}: device busy")

    @hookimpl
    def dra_unprepare(self, stored):
        super().dra_unprepare(stored)
        self._maybe_fail("dra_unprepare")

    @hookimpl
    def dra_destroy_partition(self, record):
        super().dra_destroy_partition(record)
        self._maybe_fail("dra_destroy_partition")


@pytest.mark.parametrize("hook", ["dra_unprepare", "dra_destroy_partition"])
async def test_half_failed_unprepare_is_redone_by_the_next_prepare(tmp_path, hook):
    env = Env(tmp_path, [("crash", FlakyBackend)])
    engine = await env.make_engine()
    state = env.state_root / "crash"
    ref = env.add_claim("c", [{"request": "a", "device": "dev-0"}, {"request": "b", "device": "part-0"}])
    assert (await engine.prepare([ref]))[ref.uid].error == ""
    assert (state / "partitions" / "part-0").exists() and (state / "bound" / "dev-0").exists()

    FlakyBackend.fail = hook
    err = (await engine.unprepare([ref]))[ref.uid]
    assert hook in err and "device busy" in err
    assert engine.checkpoint.get(ref.uid)["unprepareStarted"]

    # The kubelet prepares the claim again (a new pod): the claim is set up from scratch,
    # not handed out with its devices half torn down.
    out = (await engine.prepare([ref]))[ref.uid]
    assert out.error == "" and out.devices
    assert (state / "partitions" / "part-0").read_text() == ref.uid
    assert (state / "bound" / "dev-0").read_text() == ref.uid
    entry = engine.checkpoint.get(ref.uid)
    assert entry["state"] == "PrepareCompleted" and "unprepareStarted" not in entry
    assert len(env.cdi_files()) == 1

    assert (await engine.unprepare([ref]))[ref.uid] == ""
    assert engine.checkpoint.get(ref.uid) is None and env.cdi_files() == []
    assert not (state / "partitions" / "part-0").exists() and not (state / "bound" / "dev-0").exists()


async def test_half_failed_unprepare_retried_by_unprepare(tmp_path):
    """The kubelet's retry of the unprepare finishes the teardown with the stored data."""
    env = Env(tmp_path, [("crash", FlakyBackend)])
    engine = await env.make_engine()
    ref = env.add_claim("c", [{"request": "b", "device": "part-0"}])
    assert (await engine.prepare([ref]))[ref.uid].error == ""
    FlakyBackend.fail = "dra_unprepare"
    assert (await engine.unprepare([ref]))[ref.uid]
    assert (await engine.unprepare([ref]))[ref.uid] == ""
    assert engine.checkpoint.get(ref.uid) is None and env.cdi_files() == []
    log = (env.state_root / "crash" / "calls.log").read_text().splitlines()
    assert [line.split()[0] for line in log] == ["unprepare", "unprepare", "destroy"]
    assert all("completed=True" in line for line in log if line.startswith("unprepare"))


async def test_restart_does_not_restore_the_spec_of_a_half_unprepared_claim(tmp_path):
    """A driver restart after a half-failed unprepare keeps the claim half-removed (no CDI spec
    written back for it); the kubelet's retried unprepare then finishes it."""
    env = Env(tmp_path, [("crash", FlakyBackend)])
    engine = await env.make_engine()
    ref = env.add_claim("c", [{"request": "b", "device": "part-0"}])
    assert (await engine.prepare([ref]))[ref.uid].error == ""
    FlakyBackend.fail = "dra_destroy_partition"
    assert (await engine.unprepare([ref]))[ref.uid]
    assert env.cdi_files() == []
    engine = await env.make_engine()                       # restart, same boot
    assert env.cdi_files() == [] and engine.prepared_claim_count() == 0
    assert (await engine.unprepare([ref]))[ref.uid] == ""
    assert engine.checkpoint.get(ref.uid) is None
