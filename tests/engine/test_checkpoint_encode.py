"""The checkpoint's incremental encoding (dra_framework/engine/checkpoint.py ``encode`` with a
cache) writes exactly the bytes of one canonical ``json.dumps`` of the whole state, after entries
are added, replaced and dropped, so files stay readable by every version."""
from __future__ import annotations

import json

from dra_framework.engine.codec import _entry_json, decode, encode
from dra_framework.engine.entry import ClaimEntry


def entry(uid: str, **extra) -> ClaimEntry:
    return ClaimEntry.from_json(uid, {
        "uid": uid, "namespace": "ns", "name": f"claim-{uid}", "state": "PrepareCompleted", "bootId": "b",
        "startedAt": 1.25, "backends": ["example"], "journal": {"example": {"k": [1, "ü"]}}, "partitions": [],
        "devices": [{"backend": "example", "request": "r", "pool": "p", "device": "d", "shareId": None,
                     "adminAccess": False, "exclusive": True, "configs": [{"z": 1, "a": {"y": None, "b": 2.5}}]}],
        **extra})


def one_shot(claims, boot):
    return json.dumps({"bootId": boot, "claims": claims}, sort_keys=True, default=_entry_json,
                      separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def test_incremental_encoding_is_the_canonical_bytes():
    cache: dict = {}
    claims = {uid: entry(uid) for uid in ("c", "a", "b-ä", "10", "9")}
    steps = [dict(claims)]
    claims["a"] = claims["a"].replace(state="PrepareStarted")  # replaced: must be encoded again
    steps.append(dict(claims))
    del claims["c"]
    claims["new"] = entry("new", unknownFutureKey={"kept": True})
    steps.append(dict(claims))
    steps.append({})
    for state in steps:
        data = encode(state, "böot", cache)
        assert data.split(b"\n", 1)[1] == one_shot(state, "böot")
        stored, boot = decode(data)
        assert boot == "böot" and set(stored) == set(state)
        assert set(cache) == set(state)  # dropped claims leave the cache
