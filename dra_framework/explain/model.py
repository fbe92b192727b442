"""Devices and pools as the scheduler's allocator sees them for one node.

Mirrors ``GatherPools``/``buildPool`` of k8s.io/dynamic-resource-allocation/structured (the
"experimental" variant, which the scheduler uses with the DRA beta features on): the slices
that target the node (``nodeName``, ``allNodes``, a matching ``nodeSelector``, or
``perDeviceNodeSelection`` with at least one matching device), grouped by (driver, pool), the
newest generation only; a pool is incomplete when fewer than ``resourceSliceCount`` slices of
that generation exist, invalid on duplicate device or counter-set names or a consumed counter
that does not exist. Slices of a pool are ordered by name (``metadata.name``, else
``generateName`` as ``discover -o yaml`` writes them), pools by driver then pool name, pools
with binding conditions last.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from lightkube.utils.quantity import parse_quantity


def qty(v: Any) -> Decimal:
    """A quantity (``"80Gi"``, ``8``) as a Decimal; raises ValueError."""
    d = parse_quantity(v if isinstance(v, str) else str(v))
    if d is None:
        raise ValueError(f"invalid quantity {v!r}")
    return d


def fmt(d: Decimal) -> str:
    """A quantity value for messages: ``112``, ``0.5``."""
    return str(int(d)) if d == d.to_integral_value() else format(d.normalize(), "f")


@dataclass(eq=False)
class Device:
    driver: str
    pool: str
    name: str
    slice_name: str
    raw: dict[str, Any]
    attributes: dict[str, dict[str, Any]] = field(default_factory=dict)
    capacity: dict[str, dict[str, Any]] = field(default_factory=dict)
    allow_multiple: bool = False
    cel_cache: dict[str, Any] | None = None
    id: tuple[str, str, str] = ("", "", "")
    _consumption: list[tuple[str, dict[str, Decimal]]] | None = None

    has_policy: bool = False

    def __post_init__(self) -> None:
        self.id = (self.driver, self.pool, self.name)
        self.has_policy = any((c or {}).get("requestPolicy") for c in self.capacity.values())

    @property
    def consumption(self) -> list[tuple[str, dict[str, Decimal]]]:
        """``consumesCounters`` as (counter set, {counter: value})."""
        if self._consumption is None:
            self._consumption = [(cc.get("counterSet", ""), {k: qty((v or {}).get("value", 0))
                                                              for k, v in (cc.get("counters") or {}).items()})
                                 for cc in self.consumes]
        return self._consumption

    @property
    def consumes(self) -> list[dict[str, Any]]:
        return self.raw.get("consumesCounters") or []

    @property
    def taints(self) -> list[dict[str, Any]]:
        return self.raw.get("taints") or []

    def __str__(self) -> str:
        return f"{self.driver}/{self.pool}/{self.name}"


@dataclass(eq=False)
class Slice:
    name: str
    raw: dict[str, Any]
    devices: list[Device]

    @property
    def spec(self) -> dict[str, Any]:
        return self.raw.get("spec") or {}


@dataclass(eq=False)
class Pool:
    driver: str
    name: str
    slices: list[Slice] = field(default_factory=list)          # device slices targeting the node
    other_slices: list[Slice] = field(default_factory=list)    # device slices of the pool elsewhere
    counter_sets: dict[str, dict[str, Decimal]] = field(default_factory=dict)
    incomplete: bool = False
    invalid: str = ""
    binding_conditions: bool = False

    @property
    def devices(self) -> list[Device]:
        return [d for s in self.slices for d in s.devices]

    def __str__(self) -> str:
        return f"{self.driver}/{self.name}"


def slice_name(s: dict[str, Any]) -> str:
    meta = s.get("metadata") or {}
    return str(meta.get("name") or meta.get("generateName") or "")


def make_slice(s: dict[str, Any]) -> Slice:
    spec = s.get("spec") or {}
    name = slice_name(s)
    devs = []
    for d in spec.get("devices") or []:
        devs.append(Device(driver=spec.get("driver", ""), pool=(spec.get("pool") or {}).get("name", ""),
                           name=d.get("name", ""), slice_name=name, raw=d,
                           attributes=d.get("attributes") or {}, capacity=d.get("capacity") or {},
                           allow_multiple=bool(d.get("allowMultipleAllocations"))))
    return Slice(name, s, devs)


def node_selector_matches(sel: dict[str, Any] | None, node: dict[str, Any]) -> bool:
    """core/v1 NodeSelector: terms ORed, requirements of a term ANDed; an empty term matches nothing."""
    meta = node.get("metadata") or {}
    labels = meta.get("labels") or {}
    fields = {"metadata.name": meta.get("name", "")}
    for term in (sel or {}).get("nodeSelectorTerms") or []:
        exprs, fexprs = term.get("matchExpressions") or [], term.get("matchFields") or []
        if not exprs and not fexprs:
            continue
        if all(_req(r, labels) for r in exprs) and all(_req(r, fields) for r in fexprs):
            return True
    return False


def _req(r: dict[str, Any], labels: dict[str, str]) -> bool:
    key, op, values = r.get("key", ""), r.get("operator", ""), r.get("values") or []
    have = key in labels
    if op == "In":
        return have and labels[key] in values
    if op == "NotIn":
        return not have or labels[key] not in values
    if op == "Exists":
        return have
    if op == "DoesNotExist":
        return not have
    if op in ("Gt", "Lt") and have and len(values) == 1:
        try:
            a, b = int(labels[key]), int(values[0])
        except ValueError:
            return False
        return a > b if op == "Gt" else a < b
    return False


def placement_matches(obj: dict[str, Any], node: dict[str, Any]) -> bool:
    """``nodeName`` / ``allNodes`` / ``nodeSelector`` of a slice or device (``NodeMatches``)."""
    if obj.get("nodeName"):
        return obj["nodeName"] == (node.get("metadata") or {}).get("name")
    if obj.get("allNodes"):
        return True
    if obj.get("nodeSelector") is not None:
        return node_selector_matches(obj["nodeSelector"], node)
    return False


def slice_targets(spec: dict[str, Any], node: dict[str, Any]) -> bool:
    if spec.get("nodeName") or spec.get("allNodes") or spec.get("nodeSelector") is not None:
        return placement_matches(spec, node)
    if spec.get("perDeviceNodeSelection"):
        return any(placement_matches(d, node) for d in spec.get("devices") or [])
    return False


def gather_pools(slices: list[dict[str, Any]], node: dict[str, Any], legacy: bool = False) -> list[Pool]:
    """The pools the allocator sees for ``node``, in its search order. ``legacy``: Kubernetes
    1.34, where counter sets belong to their slice, a slice may also hold devices, a pool is
    incomplete when fewer slices target the node, and pools come in no particular order."""
    by_pool: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for s in slices:
        spec = s.get("spec") or {}
        if not slice_targets(spec, node):
            continue
        pid = (spec.get("driver", ""), (spec.get("pool") or {}).get("name", ""))
        have = by_pool.get(pid)
        gen = int((spec.get("pool") or {}).get("generation") or 0)
        if have is None or gen > _gen(have[0]):
            by_pool[pid] = [s]
        elif gen == _gen(have[0]):
            have.append(s)
    pools: list[Pool] = []
    late: list[Pool] = []
    for (driver, pname), ss in by_pool.items():
        gen, want = _gen(ss[0]), int((ss[0]["spec"].get("pool") or {}).get("resourceSliceCount") or 0)
        all_of_pool = ss
        if legacy:
            pool = _build_legacy_pool(driver, pname, ss)
            pool.incomplete = len(ss) != want
            (late if pool.binding_conditions else pools).append(pool)
            continue
        if len(ss) != want:
            same = [s for s in slices if _pid(s) == (driver, pname)]
            if any(_gen(s) > gen for s in same):
                continue  # obsolete: a newer generation is being published
            all_of_pool = [s for s in same if _gen(s) == gen]
            if len(all_of_pool) != want:
                pools.append(Pool(driver, pname, incomplete=True))
                continue
        pool = _build_pool(driver, pname, ss, all_of_pool)
        (late if pool.binding_conditions else pools).append(pool)
    key = lambda p: (p.driver, p.name)  # noqa: E731
    return sorted(pools, key=key) + sorted(late, key=key)


def _gen(s: dict[str, Any]) -> int:
    return int(((s.get("spec") or {}).get("pool") or {}).get("generation") or 0)


def _pid(s: dict[str, Any]) -> tuple[str, str]:
    spec = s.get("spec") or {}
    return (spec.get("driver", ""), (spec.get("pool") or {}).get("name", ""))


def _build_pool(driver: str, name: str, targeting: list[dict[str, Any]], all_of_pool: list[dict[str, Any]]) -> Pool:
    pool = Pool(driver, name)
    counter_slices: list[Slice] = []
    names = {slice_name(s) for s in targeting}
    for s in sorted(targeting, key=slice_name):
        (counter_slices if (s.get("spec") or {}).get("sharedCounters") else pool.slices).append(make_slice(s))
    for s in all_of_pool:
        if slice_name(s) in names:
            continue
        (counter_slices if (s.get("spec") or {}).get("sharedCounters") else pool.other_slices).append(make_slice(s))
    seen: set[str] = set()
    for d in pool.devices:
        if d.name in seen:
            pool.invalid = f"duplicate device name {d.name}"
            return pool
        seen.add(d.name)
    for cs in counter_slices:
        for c in cs.spec.get("sharedCounters") or []:
            if c.get("name") in pool.counter_sets:
                pool.invalid = f"duplicate counter set name {c.get('name')}"
                return pool
            pool.counter_sets[c.get("name", "")] = {k: qty((v or {}).get("value", 0))
                                                   for k, v in (c.get("counters") or {}).items()}
    for d in pool.devices + [d for s in pool.other_slices for d in s.devices]:
        for cc in d.consumes:
            cset = pool.counter_sets.get(cc.get("counterSet", ""))
            if cset is None:
                pool.invalid = f"counter set {cc.get('counterSet')} not found"
                return pool
            for k in cc.get("counters") or {}:
                if k not in cset:
                    pool.invalid = f"counter {k} not found in counter set {cc.get('counterSet')}"
                    return pool
    pool.binding_conditions = any(d.raw.get("bindingConditions") is not None for d in pool.devices)
    return pool


def _build_legacy_pool(driver: str, name: str, slices: list[dict[str, Any]]) -> Pool:
    pool = Pool(driver, name, slices=[make_slice(s) for s in sorted(slices, key=slice_name)])
    seen: set[str] = set()
    for d in pool.devices:
        if d.name in seen:
            pool.invalid = f"duplicate device name {d.name}"
        seen.add(d.name)
    for s in pool.slices:
        for c in s.spec.get("sharedCounters") or []:
            pool.counter_sets[f"{s.name}/{c.get('name', '')}"] = {
                k: qty((v or {}).get("value", 0)) for k, v in (c.get("counters") or {}).items()}
    pool.binding_conditions = any(d.raw.get("bindingConditions") is not None for d in pool.devices)
    return pool
