"""Why one device does or does not fit one request: the first reason, in the order the
scheduler's allocator checks (node, pool, class selectors, request selectors, capacity, taints,
devices in use, counters in use)."""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from .request import Request, untolerated_taint
from .capacity import CapacityError, fits
from .celenv import CelError
from .model import Device, Pool, Slice, fmt, placement_matches, qty
from .state import AllocatedState, Matcher

#: reason kinds, in the order they are checked
KINDS = ("ok", "node", "pool", "driver", "class", "selector", "missing-attribute", "cel-error", "capacity",
         "taint", "allocated", "counters")


@dataclass
class Reason:
    kind: str
    detail: str = ""
    values: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"reason": self.kind}
        if self.detail:
            out["detail"] = self.detail
        if self.values:
            out["values"] = self.values
        return out


def slice_node_reason(spec: dict[str, Any], node: dict[str, Any]) -> str:
    name = (node.get("metadata") or {}).get("name", "")
    if spec.get("nodeName"):
        return f"the slice is for node {spec['nodeName']}, not {name}"
    if spec.get("nodeSelector") is not None:
        return f"the slice's nodeSelector does not match node {name}"
    if spec.get("perDeviceNodeSelection"):
        return f"the device's node selection does not match node {name}"
    return "the slice selects no node"


def _selector_reason(m: Matcher, owner: str, sels: list[dict[str, Any]], d: Device, is_class: bool) -> Reason | None:
    for i, sel in enumerate(sels):
        expr = (sel.get("cel") or {}).get("expression", "")
        try:
            if m.evaluate(expr, d):
                continue
        except CelError as exc:
            if exc.kind == "compile":
                return Reason("cel-error", f"{owner} selector #{i}: CEL compile error: {exc}")
            v = m.explain(expr, d)
            kind = "missing-attribute" if "no such key" in str(exc) else "cel-error"
            detail = f"{owner} selector #{i}: `{v.clause}` fails: {exc}"
            return Reason(kind, detail + _did_you_mean(str(exc), d), v.values)
        v = m.explain(expr, d)
        only_driver = "device.driver" in v.clause and "device.attributes" not in v.clause \
            and "device.capacity" not in v.clause
        kind = "driver" if only_driver else ("class" if is_class else "selector")
        return Reason(kind, f"{owner} selector #{i}: `{v.clause}` is false", v.values)
    return None


def device_reason(req: Request, d: Device, s: Slice, pool: Pool | None, state: AllocatedState, m: Matcher,
                  node: dict[str, Any], legacy: bool, pools_on_node: list[Pool]) -> Reason:
    """The first reason ``d`` cannot serve ``req`` on ``node`` on its own, or ``ok``."""
    spec = s.spec
    if pool is None:
        if any(p.driver == d.driver and p.name == d.pool for p in pools_on_node):
            gen = (spec.get("pool") or {}).get("generation")
            return Reason("pool", f"the slice has pool generation {gen}, a newer generation of the pool is published")
        return Reason("node", slice_node_reason(spec, node))
    if pool.incomplete:
        return Reason("pool", f"pool {pool} is incomplete: not all of its resourceSliceCount slices are published")
    if pool.invalid:
        return Reason("pool", f"pool {pool} is invalid: {pool.invalid}")
    cls = req.cls or {}
    cname = (cls.get("metadata") or {}).get("name", "")
    r = _selector_reason(m, f"DeviceClass {cname}", (cls.get("spec") or {}).get("selectors") or [], d, True)
    if r is None:
        r = _selector_reason(m, "request", req.spec.get("selectors") or [], d, False)
    if r is not None:
        return r
    if spec.get("perDeviceNodeSelection") and not placement_matches(d.raw, node):
        return Reason("node", slice_node_reason({"perDeviceNodeSelection": True}, node))
    try:
        why = fits(d, req.capacity, state.capacity.get(d.id, {}), {}, not legacy)
    except CapacityError as exc:
        return Reason("capacity", str(exc))
    if why:
        return Reason("capacity", why)
    taint = untolerated_taint(d, req, legacy)
    if taint is not None:
        return Reason("taint", f"taint {taint.get('key')}={taint.get('value', '')}:{taint.get('effect')} is not "
                               "tolerated by the request")
    if d.id in state.devices and not req.admin:
        return Reason("allocated", "allocated to " + ", ".join(sorted(set(state.owners.get(d.id, [])))))
    skip = d.allow_multiple and state.capacity_in_use(d) and not legacy
    if d.consumes and not skip:
        short = _counter_shortage(d, pool, state, legacy)
        if short:
            return Reason("counters", short)
    return Reason("ok")


def _counter_shortage(d: Device, pool: Pool, state: AllocatedState, legacy: bool) -> str:
    avail = state.available_counters(pool, legacy)
    for cc in d.consumes:
        set_name = cc.get("counterSet", "")
        have = avail.get(state.counter_key(pool, d, set_name, legacy), {})
        for k, v in (cc.get("counters") or {}).items():
            need = qty((v or {}).get("value", 0))
            left = have.get(k, Decimal(0))
            if need > left:
                users = sorted({f"{o} ({u.name})" for s in pool.slices + pool.other_slices for u in s.devices
                                if state.is_allocated(u.id, legacy) and any(c.get("counterSet") == set_name
                                                                           for c in u.consumes)
                                for o in state.owners.get(u.id, ["?"])})
                return (f"counter set {set_name}: needs {k}={fmt(need)}, {fmt(left)} left; consumed by "
                        + (", ".join(users) if users else "no allocation (the counter is smaller than the device needs)"))
    if any(v < 0 for c in avail.values() for v in c.values()):
        return f"the counters of pool {pool} are over-consumed by existing allocations"
    return ""


def _did_you_mean(error: str, d: Device) -> str:
    """For ``no such key: X``: the device's attribute or capacity names closest to X."""
    import difflib

    key = error.split("no such key: ", 1)[-1].split(".", 1)[0].strip() if "no such key: " in error else ""
    if not key:
        return ""
    names = sorted({n.rpartition("/")[2] for n in list(d.attributes) + list(d.capacity)})
    close = difflib.get_close_matches(key, names, n=2, cutoff=0.6) or [n for n in names if n.lower() == key.lower()]
    return f" (did you mean {' or '.join(close)}?)" if close else ""
