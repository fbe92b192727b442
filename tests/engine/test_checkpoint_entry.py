"""The typed checkpoint entry (dra_framework.engine.entry): a file written by the release before
the typed entry reads into the same entries and is rewritten byte-for-byte the same; bad fields
read as defaults instead of crashing the driver; the upgrade path of the next schema version."""
from __future__ import annotations

from pathlib import Path

import pytest

from dra_framework.engine import Checkpoint, ClaimEntry, PartitionEntry
from dra_framework.engine.checkpoint import CheckpointFormatError, decode, encode
from dra_framework.engine.entry import (
    PREPARE_COMPLETED, PREPARE_STARTED, RECOVERED, SCHEMA_VERSION, SchemaVersionError, device_holder, upgrade,
)

from engine_support import Env, crash_factories

# Written by dra-framework before the typed entry existed (engine/engine.py building plain dicts):
# a completed claim with a partition, an interrupted one, a recovered one and one being unprepared
# from an earlier boot. Every schema version ever released keeps such a file here.
V1_FILE = Path(__file__).parent / "data" / "checkpoint-v1.json"
DONE, STARTED, RECOVERED_UID, LEAVING = (f"{d * 8}-{d * 4}-{d * 4}-{d * 4}-{d * 12}" for d in "1234")


def test_stored_v1_file_reads_into_typed_entries():
    raw, boot = decode(V1_FILE.read_bytes())
    claims = {uid: ClaimEntry.from_json(uid, e) for uid, e in raw.items()}
    done = claims[DONE]
    assert (done.state, done.namespace, done.name, done.boot_id) == (PREPARE_COMPLETED, "default", "part", "boot-1")
    assert done.usable("boot-1") and not done.usable("boot-2")
    assert [(d.device, d.exclusive) for d in done.devices] == [("dev-0", True), ("part-0", True)]
    assert done.partitions == (PartitionEntry(backend="crash", device="part-0", record={"name": "part-0"}),)
    assert done.partitions[0].hook_record() == {"name": "part-0"}
    assert [p.cdi_device_ids for p in done.prepared or ()] == [
        (f"k8s.gpu.example.com/claim={DONE}-dev-0",), (f"k8s.gpu.example.com/claim={DONE}-part-0",)]
    started = claims[STARTED]
    assert started.started and started.unfinished() and started.devices[0].request == "gpu/small"
    assert started.partitions[0].hook_record() == {"device": "part-0", "pending": True,
                                                   "journal": {"partition/part-0": {"name": "part-0"}}}
    assert claims[RECOVERED_UID].state == RECOVERED
    assert claims[RECOVERED_UID].partitions[0].hook_record()["recovered"] is True
    leaving = claims[LEAVING]
    assert leaving.status_written and leaving.unprepare_started == 1796034070.5
    assert not leaving.from_this_boot("boot-1") and leaving.from_this_boot("")


def test_v1_entries_are_rewritten_unchanged():
    raw, boot = decode(V1_FILE.read_bytes())
    typed = {uid: ClaimEntry.from_json(uid, e) for uid, e in raw.items()}
    assert {uid: e.to_json() for uid, e in typed.items()} == raw
    assert encode(typed, boot) == V1_FILE.read_bytes()


async def test_engine_serves_a_v1_file(tmp_path):
    """A driver upgraded onto a node with a v1 checkpoint: the prepared claim stays prepared
    (its CDI spec restored, no backend call), the earlier-boot one is cleaned at start-up."""
    env = Env(tmp_path, crash_factories(), boot_id="boot-1")
    env.cp_path.parent.mkdir(parents=True)
    env.cp_path.write_bytes(V1_FILE.read_bytes())
    engine = await env.make_engine()
    assert LEAVING not in engine.checkpoint.claims
    assert engine.checkpoint.get(DONE) == ClaimEntry.from_json(DONE, decode(V1_FILE.read_bytes())[0][DONE])
    assert f"{DONE}.json" in " ".join(env.cdi_files())


def test_bad_fields_read_as_defaults():
    e = ClaimEntry.from_json("u", {"uid": 7, "state": ["x"], "devices": "no", "partitions": [1, {"device": 3}],
                                   "journal": {"b": 5}, "unprepareStarted": "soon", "prepared": {"x": 1},
                                   "startedAt": True, "future": {"kept": 1}})
    assert (e.uid, e.state, e.devices, e.journal, e.unprepare_started, e.prepared, e.started_at) == \
        ("u", "", (), {}, None, None, None)
    assert e.partitions == (PartitionEntry(backend="", device=""),)
    assert e.to_json()["future"] == {"kept": 1}


def test_mapping_view_is_the_json_form():
    e = ClaimEntry(uid="u", state=PREPARE_STARTED, boot_id="b", started_at=1.5)
    assert dict(e) == e.to_json() and e["state"] == PREPARE_STARTED and "completedAt" not in e
    assert ClaimEntry.from_json("u", e.to_json()) == e


def test_device_holder_ignores_earlier_boots_and_shared_devices():
    def entry(uid, boot, exclusive=True):
        return ClaimEntry.from_json(uid, {"bootId": boot, "devices": [
            {"backend": "b", "pool": "p", "device": "d", "exclusive": exclusive}]})
    wanted = {("p", "d")}
    assert device_holder({"old": entry("old", "boot-0")}, "me", wanted, "boot-1") is None
    assert device_holder({"s": entry("s", "boot-1", exclusive=False)}, "me", wanted, "boot-1") is None
    assert device_holder({"me": entry("me", "boot-1")}, "me", wanted, "boot-1") is None
    held = device_holder({"x": entry("x", "boot-1")}, "me", wanted, "boot-1")
    assert held is not None and held[0].uid == "x" and held[1].device == "d"


# --- the next schema version ------------------------------------------------------------------


def _v1_to_v2(payload):
    """What a step for version 2 looks like: here, one that renames ``bootId`` to ``boot``."""
    claims = {u: {**{k: v for k, v in e.items() if k != "bootId"}, "boot": e.get("bootId", "")}
              for u, e in payload["claims"].items()}
    return {**payload, "claims": claims}


def test_upgrade_applies_each_step_in_order():
    raw, boot = decode(V1_FILE.read_bytes())
    payload = {"bootId": boot, "claims": raw}
    out = upgrade(1, payload, target=2, steps={1: _v1_to_v2})
    assert out["claims"][DONE]["boot"] == "boot-1" and "bootId" not in out["claims"][DONE]
    assert upgrade(SCHEMA_VERSION, payload) is payload  # the current version is read as stored
    with pytest.raises(SchemaVersionError, match="no upgrade from schema version 2 to 3"):
        upgrade(1, payload, target=3, steps={1: _v1_to_v2})
    with pytest.raises(SchemaVersionError, match="newer"):
        upgrade(3, payload, target=2, steps={1: _v1_to_v2})


def test_decode_runs_the_registered_steps(monkeypatch):
    """decode() of a file of an older version goes through MIGRATIONS up to SCHEMA_VERSION."""
    import dra_framework.engine.codec as cp_mod
    import dra_framework.engine.entry as entry_mod
    monkeypatch.setattr(entry_mod, "MIGRATIONS", {1: _v1_to_v2})
    monkeypatch.setattr(cp_mod, "SCHEMA_VERSION", 2)
    monkeypatch.setattr(cp_mod, "upgrade", lambda v, p: entry_mod.upgrade(v, p, target=2,
                                                                          steps=entry_mod.MIGRATIONS))
    claims, _ = decode(V1_FILE.read_bytes())
    assert claims[DONE]["boot"] == "boot-1"
    monkeypatch.setattr(cp_mod, "upgrade", lambda v, p: entry_mod.upgrade(v, p, target=2, steps={}))
    with pytest.raises(CheckpointFormatError) as err:
        decode(V1_FILE.read_bytes())
    assert err.value.reason == "garbage" and "no upgrade from schema version 1" in str(err.value)


async def test_plain_json_written_through_update_is_read_as_an_entry(tmp_path):
    cp = Checkpoint(tmp_path / "checkpoint.json", boot_id="b")
    await cp.load()
    await cp.update(lambda c: c.__setitem__("u", {"state": PREPARE_STARTED, "extra": 1}))
    assert isinstance(cp.get("u"), ClaimEntry) and cp.get("u").started
    again = Checkpoint(tmp_path / "checkpoint.json", boot_id="b")
    assert (await again.load())["u"].extra == {"extra": 1}
    stored, _ = decode((tmp_path / "checkpoint.json").read_bytes())
    assert stored["u"]["uid"] == "u" and stored["u"]["extra"] == 1
