"""Driver-owned device status: the ``ResourceClaim.status.devices`` entries a prepare writes
from the backends' :class:`~dra_framework.model.DeviceStatus` results (see
https://kubernetes.io/docs/concepts/scheduling-eviction/dynamic-resource-allocation/#resourceclaim-device-status)."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Mapping, Sequence

from ..model import DeviceStatus, PrepareResult
from .planning import PlannedDevice


def json_copy(value: Any, what: str) -> Any:
    """A deep copy through JSON; TypeError naming ``what`` when ``value`` is not JSON data."""
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what} must be JSON-serialisable: {exc}") from None


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_entries(driver: str, plan: Sequence[PlannedDevice],
                   results: Mapping[str, PrepareResult]) -> list[dict[str, Any]]:
    """One ``status.devices`` entry ``{driver, pool, device, shareID?, conditions?, data?,
    networkData?}`` per (pool, device, share id) whose backend returned a status, in plan order.
    Conditions get ``reason: Prepared``, an empty message and the current time unless given."""
    out: list[dict[str, Any]] = []
    seen: set[tuple[str, str, str | None]] = set()
    for p in plan:
        k = (p.allocated.pool, p.allocated.name, p.allocated.share_id)
        pd = results[p.backend].devices.get(p.allocated.name)
        st: DeviceStatus | None = pd.status if pd is not None else None
        if st is None or k in seen:
            continue
        seen.add(k)
        e: dict[str, Any] = {"driver": driver, "pool": k[0], "device": k[1]}
        if k[2]:
            e["shareID"] = k[2]
        if st.conditions:
            e["conditions"] = [{"reason": "Prepared", "message": "", "lastTransitionTime": now_rfc3339(), **c}
                               for c in st.conditions]
        if st.data is not None:
            e["data"] = json_copy(dict(st.data), "device status data")
        if st.network_data is not None:
            nd = st.network_data
            e["networkData"] = {k2: v for k2, v in (("interfaceName", nd.interface_name), ("ips", list(nd.ips)),
                                                     ("hardwareAddress", nd.hardware_address)) if v}
        out.append(e)
    return out


__all__ = ["json_copy", "now_rfc3339", "status_entries"]
