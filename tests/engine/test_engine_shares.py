"""The share-aware device check of PrepareStarted (engine/shares.py): exclusive results, shares,
the same share ID twice, and shares that would over-consume a capacity; plus a device record of
a share keeping its consumed capacity through the checkpoint's JSON."""
from __future__ import annotations

from dra_framework.api import Capacity, RequestPolicy, ValidRange
from dra_framework.engine.entry import PREPARE_COMPLETED, ClaimEntry, DeviceRecord
from dra_framework.engine.shares import conflict

GI = 1 << 30
CAPS = {("node", "acc-0"): {"memory": Capacity(16 * GI, RequestPolicy(default=GI, valid_range=ValidRange(min=GI, step=GI)))}}


def rec(share: str | None = None, memory: str | None = None, admin: bool = False) -> DeviceRecord:
    return DeviceRecord(backend="example", request="r", pool="node", device="acc-0", share_id=share,
                        admin_access=admin, exclusive=share is None and not admin,
                        consumed_capacity={"memory": memory} if memory else {})


def held(uid: str, *devices: DeviceRecord, boot: str = "b1") -> ClaimEntry:
    return ClaimEntry(uid=uid, namespace="ns", name=f"claim-{uid}", state=PREPARE_COMPLETED, boot_id=boot,
                      devices=devices)


def check(claims, *mine):
    return conflict({c.uid: c for c in claims}, "new", list(mine), CAPS, "b1")


def test_shares_fit_until_the_capacity_is_used_up():
    claims = [held("a", rec("s-a", "8Gi")), held("b", rec("s-b", "6Gi"))]
    assert check(claims, rec("s-new", "2Gi")) is None
    why = check(claims, rec("s-new", "3Gi"))
    assert why == ("share s-new of device 'acc-0' (pool 'node') needs 3Gi of capacity 'memory', but shares of "
                   "ns/claim-a, ns/claim-b already hold 15032385536 of 17179869184"), why
    # two shares of one claim count together
    assert "needs 1Gi" in check(claims, rec("s-1", "1Gi"), rec("s-2", "1Gi"), rec("s-3", "1Gi"))


def test_exclusive_and_shared_holders_exclude_each_other():
    assert "is already prepared for claim ns/claim-a (a) as share s-a" in check([held("a", rec("s-a", "1Gi"))], rec())
    assert "is already prepared for claim ns/claim-a (a) exclusively" in check([held("a", rec())], rec("s", "1Gi"))
    assert "is already prepared for claim ns/claim-a (a);" in check([held("a", rec())], rec())
    assert "share s-a of device 'acc-0' (pool 'node') is already prepared" in check([held("a", rec("s-a", "1Gi"))],
                                                                                   rec("s-a", "1Gi"))


def test_admin_access_and_earlier_boots_hold_nothing():
    assert check([held("a", rec(admin=True))], rec()) is None
    assert check([held("a", rec())], rec(admin=True)) is None
    assert check([held("a", rec(), boot="b0")], rec()) is None


def test_consumed_capacity_round_trips_and_is_left_out_for_exclusive_devices():
    share = rec("s-a", "8Gi")
    assert DeviceRecord.from_json(share.to_json()) == share
    assert "consumedCapacity" not in rec().to_json()
