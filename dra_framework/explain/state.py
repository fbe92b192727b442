"""What the cluster already uses, and selector matching with the scheduler's error texts.

``AllocatedState`` mirrors the scheduler's ``foreachAllocatedDevice``: results of allocated claims
count as in use, except adminAccess results; results with a ``shareID`` (consumable capacity)
count per share and add their ``consumedCapacity`` to the device. Counters of a pool are the
counter sets minus what the allocated devices consume.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Callable, Hashable, TypeVar

from .celenv import CelError
from .model import Device, Pool, qty
from .selector import Selector, Verdict

if TYPE_CHECKING:
    from .request import Request

DeviceID = tuple[str, str, str]


@dataclass
class AllocatedState:
    devices: set[DeviceID] = field(default_factory=set)
    shared: set[DeviceID] = field(default_factory=set)
    capacity: dict[DeviceID, dict[str, Decimal]] = field(default_factory=dict)
    owners: dict[DeviceID, list[str]] = field(default_factory=dict)
    _counters: dict[tuple[str, bool], dict[str, dict[str, Decimal]]] = field(default_factory=dict)
    _over: dict[tuple[str, bool], bool] = field(default_factory=dict)

    @classmethod
    def from_claims(cls, claims: list[dict[str, Any]], skip_uid: str = "") -> "AllocatedState":
        st = cls()
        for c in claims:
            meta = c.get("metadata") or {}
            alloc = (c.get("status") or {}).get("allocation")
            if not alloc or (skip_uid and meta.get("uid") == skip_uid):
                continue
            owner = f"{meta.get('namespace', '')}/{meta.get('name', '')}"
            for r in (alloc.get("devices") or {}).get("results") or []:
                if r.get("adminAccess"):
                    continue
                did = (r.get("driver", ""), r.get("pool", ""), r.get("device", ""))
                st.owners.setdefault(did, []).append(owner)
                if r.get("shareID"):
                    st.shared.add(did)
                    if r.get("consumedCapacity"):
                        cur = st.capacity.setdefault(did, {})
                        for k, v in r["consumedCapacity"].items():
                            cur[k] = cur.get(k, Decimal(0)) + qty(v)
                    continue
                st.devices.add(did)
        return st

    def is_allocated(self, did: DeviceID, legacy: bool = False) -> bool:
        if legacy:
            return did in self.devices
        return did in self.devices or did in self.shared or did in self.capacity

    def capacity_in_use(self, d: Device) -> bool:
        return d.id in self.capacity or d.id in self.shared

    @staticmethod
    def counter_key(pool: Pool, d: Device, set_name: str, legacy: bool) -> str:
        """1.34 scoped counter sets to their slice; 1.35+ to the pool."""
        return f"{d.slice_name}/{set_name}" if legacy else set_name

    def over_consumed(self, pool: Pool, legacy: bool) -> bool:
        key = (str(pool), legacy)
        if key not in self._over:
            self._over[key] = any(v < 0 for c in self.available_counters(pool, legacy).values() for v in c.values())
        return self._over[key]

    def available_counters(self, pool: Pool, legacy: bool) -> dict[str, dict[str, Decimal]]:
        key = (str(pool), legacy)
        if key not in self._counters:
            avail = {s: dict(c) for s, c in pool.counter_sets.items()}
            for s in pool.slices + pool.other_slices:
                for d in s.devices:
                    if not self.is_allocated(d.id, legacy):
                        continue
                    for cc in d.consumes:
                        cset = avail.get(self.counter_key(pool, d, cc.get("counterSet", ""), legacy))
                        if cset is None:
                            continue
                        for k, v in (cc.get("counters") or {}).items():
                            if k in cset:
                                cset[k] -= qty((v or {}).get("value", 0))
            self._counters[key] = avail
        return self._counters[key]


class Matcher:
    """DeviceClasses by name and CEL selectors, compiled once, results cached per device."""

    def __init__(self, classes: dict[str, dict[str, Any]], legacy: bool = False):
        self.classes, self.legacy = classes, legacy
        self._compiled: dict[str, Selector | CelError] = {}
        self._results: dict[tuple[str, DeviceID], bool | CelError] = {}
        self._verdicts: dict[tuple[str, DeviceID], Verdict] = {}

    def explain(self, expression: str, d: Device) -> "Verdict":
        """The clause of ``expression`` that is false or fails on ``d`` (cached)."""
        key = (expression, d.id)
        if key not in self._verdicts:
            self._verdicts[key] = self.selector(expression).explain(d)
        return self._verdicts[key]

    def selector(self, expression: str) -> Selector:
        return _memo(self._compiled, expression, lambda: Selector(expression, self.legacy))

    def evaluate(self, expression: str, d: Device) -> bool:
        """True/False, or raises CelError ("compile" or "runtime")."""
        return _memo(self._results, (expression, d.id), lambda: self.selector(expression).matches(d))

    def selectors_match(self, req: "Request", d: Device, claim_key: str) -> bool:
        """``selectorsMatch`` of the class, then of the request; raises AllocationError."""
        from .allocator import AllocationError

        cls = req.cls or {}
        cname = (cls.get("metadata") or {}).get("name", "")
        for owner, sels in ((f"class {cname}", (cls.get("spec") or {}).get("selectors") or []),
                            (f"claim {claim_key}", req.spec.get("selectors") or [])):
            for i, sel in enumerate(sels):
                expr = (sel.get("cel") or {}).get("expression", "")
                try:
                    if not self.evaluate(expr, d):
                        return False
                except CelError as exc:
                    if exc.kind == "compile":
                        raise AllocationError(f"{owner}: selector #{i}: CEL compile error: {exc}") from exc
                    where = "" if self.legacy else f" on device {d}"  # 1.34 did not name the device
                    raise AllocationError(f"{owner}: selector #{i}{where}: CEL runtime error: {exc}") from exc
        return True


_T = TypeVar("_T")


def _memo(cache: dict[Any, Any], key: Hashable, compute: Callable[[], _T]) -> _T:
    """``compute()`` once per ``key``; a CelError it raises is cached and raised again."""
    if key not in cache:
        try:
            cache[key] = compute()
        except CelError as exc:
            cache[key] = exc
    value = cache[key]
    if isinstance(value, CelError):
        raise value
    return value

