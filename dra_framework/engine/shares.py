"""The driver's own check that a claim may use its devices now (the last line of defence after a
force-deleted pod, when the control plane frees a claim before the node has torn it down),
aware of consumable capacity (DRAConsumableCapacity, docs/backends.md "Consumable capacity").

Against every other claim of this boot in the checkpoint (prepared or being prepared), ignoring
admin-access results on both sides:

* a device held **exclusively** (a result without ``shareID``) conflicts with any other holder
  of the same (pool, device), exclusive or share;
* a **share** (a result with ``shareID``) conflicts with an exclusive holder, with another claim
  holding the same share ID, and with the other shares of the device when together they would
  consume more of a capacity than the device has (``consumedCapacity`` summed per capacity name
  against the published ``capacity`` value).

Returns a message naming the device, the other claim and the reason, or None.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any, Mapping, Sequence

from ..model.attributes import quantity_value
from .entry import ClaimEntry, DeviceRecord


def _num(v: Decimal | int) -> str:
    """``15032385536`` (no ``.000`` of a whole number)."""
    d = Decimal(v)
    return str(d.to_integral_value()) if d == d.to_integral_value() else str(d.normalize())


def _capacity_values(capacity: Mapping[str, Any]) -> dict[str, Decimal]:
    out = {}
    for name, cap in capacity.items():
        value = getattr(cap, "value", cap)
        try:
            out[name] = quantity_value(value)
        except (TypeError, ValueError):
            continue
    return out


def conflict(claims: Mapping[str, ClaimEntry], uid: str, mine: Sequence[DeviceRecord],
             capacities: Mapping[tuple[str, str], Mapping[str, Any]], boot_id: str) -> str | None:
    """``mine``: the new claim's device records; ``capacities``: (pool, device) → the published
    capacity map of each of them."""
    wanted = [d for d in mine if not d.admin_access]
    if not wanted:
        return None
    keys = {(d.pool, d.device) for d in wanted}
    holders: dict[tuple[str, str], list[tuple[ClaimEntry, DeviceRecord]]] = {}
    for other_uid, other in claims.items():
        if other_uid == uid or not other.from_this_boot(boot_id):
            continue  # prepared before a reboot: holds nothing now
        for d in other.devices:
            if not d.admin_access and (d.pool, d.device) in keys:
                holders.setdefault((d.pool, d.device), []).append((other, d))

    def who(other: ClaimEntry) -> str:
        state = "prepared" if other.completed else "being prepared"
        return f"{state} for claim {other.namespace}/{other.name} ({other.uid})"

    used: dict[tuple[str, str], dict[str, Decimal]] = {}
    for d in wanted:
        key = (d.pool, d.device)
        here = holders.get(key, [])
        what = f"device {d.device!r} (pool {d.pool!r})"
        for other, od in here:
            if d.share_id is None:
                how = "" if od.share_id is None else f" as share {od.share_id}"
                return f"{what} is already {who(other)}{how}; it becomes available when that claim is unprepared"
            if od.share_id is None:
                return f"{what} is already {who(other)} exclusively; it becomes available when that claim is unprepared"
            if od.share_id == d.share_id:
                return f"share {d.share_id} of {what} is already {who(other)}"
        if d.share_id is None or not d.consumed_capacity:
            continue
        total = used.setdefault(key, {})
        if not total:  # the other claims' shares, once per device
            for _other, od in here:
                for name, q in od.consumed_capacity.items():
                    total[name] = total.get(name, Decimal(0)) + quantity_value(q)
        limits = _capacity_values(capacities.get(key, {}))
        for name, q in d.consumed_capacity.items():
            need = quantity_value(q)
            if name in limits and total.get(name, Decimal(0)) + need > limits[name]:
                others = ", ".join(f"{o.namespace}/{o.name}" for o, od in here if name in od.consumed_capacity)
                return (f"share {d.share_id} of {what} needs {q} of capacity {name!r}, but shares of "
                        f"{others or 'other claims'} already hold {_num(total.get(name, 0))} of {_num(limits[name])}")
            total[name] = total.get(name, Decimal(0)) + need
    return None
