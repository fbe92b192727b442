"""One info line per prepare/unprepare (claim, UID, devices, CDI IDs, duration); each backend
hook call at debug (backend, hook, duration)."""
from __future__ import annotations

import logging


def lines(caplog, logger: str, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == logger and r.levelno == level]


async def test_prepare_and_unprepare_logged_once_with_hooks_at_debug(fake_env, caplog):
    caplog.set_level(logging.DEBUG, logger="dra_framework")
    engine = await fake_env.make_engine()
    ref = fake_env.add_claim("c", [{"request": "gpu", "device": "dev-0"}], namespace="team-a")
    caplog.clear()
    out = (await engine.prepare([ref]))[ref.uid]
    info = lines(caplog, "dra_framework.engine", logging.INFO)
    assert len(info) == 1, [r.getMessage() for r in info]
    msg = info[0].getMessage()
    cdi_id = out.devices[0].cdi_device_ids[0]
    assert msg.startswith(f"prepared claim team-a/c ({ref.uid}) in ") and " s: devices [node-1/dev-0]" in msg
    assert cdi_id in msg and info[0].claimUID == ref.uid and info[0].cdiIDs == cdi_id
    assert info[0].seconds >= 0
    hooks = [(r.backend, r.hook) for r in lines(caplog, "dra_framework.backend", logging.DEBUG)]
    assert ("gpu.example.com/fake", "dra_prepare") in hooks
    assert all(" took " in r.getMessage() for r in lines(caplog, "dra_framework.backend", logging.DEBUG))

    caplog.clear()
    await engine.prepare([ref])
    [again] = lines(caplog, "dra_framework.engine", logging.INFO)
    assert "(prepared already)" in again.getMessage()

    caplog.clear()
    assert await engine.unprepare([ref]) == {ref.uid: ""}
    [info] = lines(caplog, "dra_framework.engine", logging.INFO)
    assert info.getMessage().startswith(f"unprepared claim team-a/c ({ref.uid}) in ") and cdi_id in info.getMessage()
    assert ("gpu.example.com/fake", "dra_unprepare") in [
        (r.backend, r.hook) for r in lines(caplog, "dra_framework.backend", logging.DEBUG)]


async def test_failed_prepare_logged_once_as_warning(fake_env, caplog):
    engine = await fake_env.make_engine()
    ref = fake_env.add_claim("c", [{"request": "gpu", "device": "no-such-device"}])
    caplog.clear()
    err = (await engine.prepare([ref]))[ref.uid].error
    [warn] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert warn.getMessage().startswith(f"prepare of claim default/c ({ref.uid}) failed after ")
    assert "no-such-device" in warn.getMessage() and "no-such-device" in err and warn.reason == "unknown_device"
