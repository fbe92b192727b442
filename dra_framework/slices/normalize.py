"""How the ResourceSlice publisher compares slices: normalization (quantities by value, flags
and empty maps as the server stores them, taint ``timeAdded`` ignored, dropped fields removed),
the fields a server dropped from a write, and the small helpers the controller's parts share."""
from __future__ import annotations

from typing import AbstractSet, Any

from ..model.attributes import quantity_value

#: Spec fields the publisher owns; others (added by newer servers) are kept on update.
MANAGED_SPEC_FIELDS = ("pool", "nodeName", "nodeSelector", "allNodes", "perDeviceNodeSelection",
                       "devices", "sharedCounters")
_MAP_FIELDS = {"attributes", "capacity", "counters"}
#: Feature gates behind fields the server may drop.
FEATURE_OF_FIELD = {
    "devices[].taints": "DRADeviceTaints",
    "devices[].consumesCounters": "DRAPartitionableDevices",
    "sharedCounters": "DRAPartitionableDevices",
    "perDeviceNodeSelection": "DRAPartitionableDevices",
    "devices[].allowMultipleAllocations": "DRAConsumableCapacity",
    "devices[].capacity.*.requestPolicy": "DRAConsumableCapacity",
    "devices[].attributes.*.ints": "DRAListTypeAttributes",
    "devices[].attributes.*.bools": "DRAListTypeAttributes",
    "devices[].attributes.*.strings": "DRAListTypeAttributes",
    "devices[].attributes.*.versions": "DRAListTypeAttributes",
}


# --- normalization for comparison ----------------------------------------------------------------

_QUANTITY_KEYS = {"value", "default", "min", "max", "step"}
_FLAG_KEYS = {"allowMultipleAllocations", "allNodes", "perDeviceNodeSelection"}


def _qnorm(q: Any) -> Any:
    try:
        return str(quantity_value(q if isinstance(q, (int, str)) else str(q)).normalize())
    except (ValueError, ArithmeticError):
        return q


def _norm(obj: Any, key: str = "") -> Any:
    """Drop empty values, taint timeAdded; quantities compared by value."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if k == "timeAdded":
                continue
            n = _norm(v, k)
            if n is None or n == [] or n == {} or (n is False and k in _FLAG_KEYS):
                continue
            out[k] = n
        return out
    if isinstance(obj, list):
        if key == "validValues":
            return [_qnorm(x) for x in obj]
        return [_norm(x) for x in obj]
    if key in _QUANTITY_KEYS and isinstance(obj, (str, int)) and not isinstance(obj, bool):
        return _qnorm(obj)
    return obj


def _paths(obj: Any, prefix: str = "", out: set[str] | None = None, parent_key: str = "") -> set[str]:
    out = set() if out is None else out
    if isinstance(obj, dict):
        for k, v in obj.items():
            p = f"{prefix}.*" if parent_key in _MAP_FIELDS else (f"{prefix}.{k}" if prefix else k)
            out.add(p)
            _paths(v, p, out, k)
    elif isinstance(obj, list):
        for v in obj:
            _paths(v, prefix + "[]", out, "")
    return out


def strip_paths(obj: Any, dropped: set[str], prefix: str = "", parent_key: str = "") -> Any:
    if not dropped:
        return obj
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            p = f"{prefix}.*" if parent_key in _MAP_FIELDS else (f"{prefix}.{k}" if prefix else k)
            if p in dropped:
                continue
            out[k] = strip_paths(v, dropped, p, k)
        return out
    if isinstance(obj, list):
        return [strip_paths(v, dropped, prefix + "[]") for v in obj]
    return obj


def normalize_spec(spec: dict, dropped: AbstractSet[str] = frozenset()) -> dict:
    s = {k: spec[k] for k in MANAGED_SPEC_FIELDS if k in spec}
    if "pool" in s:
        p = s["pool"]
        s["pool"] = {"name": p.get("name"), "generation": int(p.get("generation") or 0),
                     "resourceSliceCount": int(p.get("resourceSliceCount") or 0)}
    return strip_paths(_norm(s), set(dropped))


def dropped_paths(sent: dict, returned: dict) -> set[str]:
    """Paths present in what was sent but absent from what the server stored."""
    a = _paths(normalize_spec(sent))
    b = _paths(normalize_spec(returned))
    missing = a - b
    # Report the top-most missing paths only.
    return {p for p in missing if not any(p != q and p.startswith(q) and p[len(q)] in ".[" for q in missing)}


_LIST_KINDS = ("ints", "bools", "strings", "versions")


def strip_list_attributes(spec: dict) -> set[str]:
    """Remove list-valued attributes from a slice spec in place; return the list kinds removed."""
    kinds: set[str] = set()
    for d in spec.get("devices") or []:
        attrs = d.get("attributes")
        if not attrs:
            continue
        for name in [n for n, a in attrs.items() if any(k in a for k in _LIST_KINDS)]:
            kinds.update(k for k in _LIST_KINDS if k in attrs[name])
            del attrs[name]
        if not attrs:
            del d["attributes"]
    return kinds


def err_text(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def resource_version(obj: dict) -> int:
    try:
        return int(obj["metadata"].get("resourceVersion") or 0)
    except (TypeError, ValueError):
        return 0
