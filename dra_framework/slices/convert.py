"""Model (``dra_framework.model``) → resource.k8s.io/v1 ResourceSlice content.

Everything here is pure: no client, no I/O. ``build_pools`` converts, validates and splits a
driver's pools; ``desired_slices`` renders complete ResourceSlice objects (what
``dra-framework discover -o yaml`` prints).

Pool names:

- the default node pool (``Pool.name is None``) is published under the node name;
- a named node-local pool is published as ``<node>/<name>`` so that every node's pool is unique
  in the cluster (pool names are per driver, cluster-wide);
- pools with ``node_selector`` or ``all_nodes`` keep their name as is: the backend must make it
  unique in the cluster. ``model_pool_name`` maps a published name back.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from ..model import Capacity, CounterSet, Device, Pool, Version
from .apiversions import API_VERSION, Limits, ServerInfo
from .split import split_pool
from .validate import (
    Issue,
    Report,
    attribute_value_kind,
    counter_set_errors,
    device_errors,
    driver_name_errors,
    normalize_version,
    pool_name_errors,
)

KIND = "ResourceSlice"
#: Label on slices of non-node-local pools: which node's publisher owns them.
PUBLISHER_LABEL = "resource.dra-framework.io/publisher-node"
#: apiserver's generateName: base truncated to 63-5 characters, then 5 random characters.
GENERATE_NAME_MAX_BASE = 58


def published_pool_name(name: str | None, node_name: str, node_local: bool = True) -> str:
    if name is None:
        return node_name
    if node_local:
        return name if name.startswith(node_name + "/") else f"{node_name}/{name}"
    return name


def model_pool_name(published: str, node_name: str) -> str | None:
    """Inverse of ``published_pool_name`` for node-local pools (None = default node pool).
    Names of non-node-local pools come back unchanged."""
    if published == node_name:
        return None
    if published.startswith(node_name + "/"):
        return published[len(node_name) + 1:]
    return published


@dataclass
class DesiredPool:
    """What one pool should look like: node selection plus the slice contents in index order."""

    name: str
    node_local: bool = True
    node_selector: dict | None = None
    all_nodes: bool = False
    slices: list[dict] = field(default_factory=list)

    def selection(self, node_name: str) -> dict:
        if self.node_local:
            return {"nodeName": node_name}
        if self.node_selector is not None:
            return {"nodeSelector": self.node_selector}
        return {"allNodes": True}


def _q(q: Any) -> Any:
    """A quantity as sent to the server: ints as plain numbers, strings as they are (validated
    separately)."""
    if isinstance(q, int) and not isinstance(q, bool):
        return str(q)
    return q


def _capacity(c: Capacity | Any) -> dict:
    if not isinstance(c, Capacity):
        return {"value": _q(c)}
    out: dict = {"value": _q(c.value)}
    p = c.request_policy
    if p is not None:
        pol: dict = {}
        if p.default is not None:
            pol["default"] = _q(p.default)
        if p.valid_values:
            pol["validValues"] = [_q(v) for v in p.valid_values]
        if p.valid_range is not None:
            r = {"min": _q(p.valid_range.min)}
            if p.valid_range.max is not None:
                r["max"] = _q(p.valid_range.max)
            if p.valid_range.step is not None:
                r["step"] = _q(p.valid_range.step)
            pol["validRange"] = r
        out["requestPolicy"] = pol
    return out


def counter_set_to_api(cs: CounterSet) -> dict:
    return {"name": cs.name, "counters": {k: {"value": _q(v)} for k, v in cs.counters.items()}}


def device_to_api(dev: Device, *, driver: str, limits: Limits, pool: str, report: Report) -> dict | None:
    """Convert and validate one device; None (and issues in ``report``) when it is invalid."""
    out: dict = {"name": dev.name}
    attrs: dict = {}
    bad = False
    for key, v in dev.attributes.items():
        kind = attribute_value_kind(v)
        if kind is None or kind == "empty-list":
            report.invalid(pool, dev.name, f"attributes[{key}]",
                           "an empty list" if kind else f"unsupported value type {type(v).__name__} "
                                                        "(int, bool, str, Version or a list of one of them)")
            bad = True
            continue
        if kind in ("ints", "bools", "strings", "versions") and not limits.list_attributes:
            report.warn(pool, dev.name, f"attributes[{key}]",
                        f"list attribute left out: list attributes need Kubernetes 1.36+ (server 1.{limits.minor})")
            continue
        if kind == "version" and isinstance(v, Version):
            norm = normalize_version(v.value)
            if norm is None:
                report.warn(pool, dev.name, f"attributes[{key}].version",
                            f"{v.value!r} is not a version that can be made SemVer; published as a string")
                attrs[key] = {"string": v.value}
            else:
                attrs[key] = {"version": norm}
        elif kind == "versions" and isinstance(v, (list, tuple)):
            versions = [x for x in v if isinstance(x, Version)]
            norms = [normalize_version(x.value) for x in versions]
            if any(n is None for n in norms):
                report.warn(pool, dev.name, f"attributes[{key}].versions",
                            "a value cannot be made SemVer; the list is published as strings")
                attrs[key] = {"strings": [x.value for x in versions]}
            else:
                attrs[key] = {"versions": norms}
        else:
            attrs[key] = {kind: list(v) if isinstance(v, (list, tuple)) else v}
    if bad:
        return None
    if attrs:
        out["attributes"] = attrs
    if dev.capacity:
        out["capacity"] = {k: _capacity(c) for k, c in dev.capacity.items()}
    if dev.consumes_counters:
        out["consumesCounters"] = [
            {"counterSet": c.counter_set, "counters": {k: {"value": _q(x)} for k, x in c.counters.items()}}
            for c in dev.consumes_counters]
    if dev.taints:
        out["taints"] = _taints(dev, limits, pool, report)
        if not out["taints"]:
            del out["taints"]
    if dev.allow_multiple_allocations:
        out["allowMultipleAllocations"] = True
    errs = device_errors(out, limits, driver)
    if errs:
        for f, m in errs:
            report.invalid(pool, dev.name, f, m)
        return None
    return out


_SEVERITY = {"NoExecute": 0, "NoSchedule": 1, "None": 2}


def _taints(dev: Device, limits: Limits, pool: str, report: Report) -> list[dict]:
    """Taints as the server takes them. A device must never vanish from the pool because of its
    taints (health taints come and go): effects the server does not know (``None`` before 1.35)
    are left out, and beyond the server's taint limit the least severe are left out, each with a
    warning. Unknown effects stay, so validation reports a backend bug."""
    taints = [{"key": t.key, **({"value": t.value} if t.value else {}),
               "effect": getattr(t.effect, "value", t.effect)} for t in dev.taints]
    known = set(_SEVERITY)
    kept = [t for t in taints if t["effect"] in limits.taint_effects or t["effect"] not in known]
    if len(kept) < len(taints):
        report.warn(pool, dev.name, "taints", f"{len(taints) - len(kept)} taint(s) with an effect Kubernetes "
                    f"1.{limits.minor} does not support left out ({', '.join(sorted({t['key'] for t in taints if t not in kept}))})")
    if len(kept) > limits.max_taints:
        kept.sort(key=lambda t: _SEVERITY.get(t["effect"], -1))
        dropped = kept[limits.max_taints:]
        kept = kept[:limits.max_taints]
        report.warn(pool, dev.name, "taints", f"more than {limits.max_taints} taints (the limit of Kubernetes "
                    f"1.{limits.minor}): the least severe left out ({', '.join(t['key'] for t in dropped)})")
    return kept


def _iter_pools(pools: Any) -> Iterable[Pool]:
    if isinstance(pools, Pool):
        yield pools
        return
    if hasattr(pools, "pools") and isinstance(pools.pools, Mapping):
        pools = pools.pools  # DriverInventory
    if isinstance(pools, Mapping):
        for name, p in pools.items():
            if p.name != name:
                p = Pool(name=name, devices=p.devices, counter_sets=p.counter_sets, selection=p.selection)
            yield p
    else:
        yield from pools


def build_pool(p: Pool, *, driver: str, node_name: str, limits: Limits, report: Report,
               taints_possible: bool = False) -> DesiredPool | None:
    sel = p.selection
    node_local = not (sel.node_selector is not None or sel.all_nodes) and sel.node_local
    name = published_pool_name(p.name, node_name, node_local)
    errs = pool_name_errors(name)
    if not node_local and sel.node_selector is not None and len(sel.node_selector.get("nodeSelectorTerms") or []) != 1:
        errs.append("nodeSelector must have exactly one node selector term")
    if sel.node_selector is not None and sel.all_nodes:
        errs.append("only one of node_selector and all_nodes may be set")
    if errs:
        report.invalid_devices.setdefault(name, set()).update(d.name for d in p.devices)
        for e in errs:
            report.add(Issue(name, None, "pool", f"{e}; the pool is not published"))
        return None

    counter_sets: dict[str, dict] = {}
    for cs in p.counter_sets:
        api = counter_set_to_api(cs)
        cerrs = counter_set_errors(api, limits)
        if cs.name in counter_sets:
            cerrs.append(("name", "duplicate counter set name in the pool"))
        if cerrs:
            report.invalid_counter_sets.setdefault(name, set()).add(cs.name)
            for f, m in cerrs:
                report.add(Issue(name, None, f"sharedCounters[{cs.name}].{f}", m))
            continue
        counter_sets[cs.name] = api

    devices: dict[str, dict] = {}
    for dev in p.devices:
        if dev.name in devices:
            report.invalid(name, dev.name, "name", "duplicate device name in the pool (the first one is published)")
            continue
        dev_api = device_to_api(dev, driver=driver, limits=limits, pool=name, report=report)
        if dev_api is None:
            continue
        ok = True
        for i, c in enumerate(dev_api.get("consumesCounters") or []):
            cset = counter_sets.get(c["counterSet"])
            if cset is None:
                report.invalid(name, dev.name, f"consumesCounters[{i}].counterSet",
                               f"counter set {c['counterSet']!r} does not exist in the pool (or is invalid)")
                ok = False
                continue
            missing = sorted(set(c["counters"]) - set(cset["counters"]))
            if missing:
                report.invalid(name, dev.name, f"consumesCounters[{i}].counters",
                               f"counters {missing} are not in counter set {c['counterSet']!r}")
                ok = False
        if ok:
            devices[dev.name] = dev_api

    dev_list = list(devices.values())
    advanced = taints_possible or any(
        d.get("taints") or d.get("consumesCounters")
        or any(k in a for a in (d.get("attributes") or {}).values() for k in ("ints", "bools", "strings", "versions"))
        for d in dev_list)
    slices = split_pool(dev_list, list(counter_sets.values()), limits, advanced=advanced, pool=name, report=report)
    published = sum(len(s.get("devices") or []) for s in slices)
    report.published_devices[name] = published
    if p.devices and published == 0:
        report.warn(name, None, "devices", f"the backend reported {len(p.devices)} devices but none is published")
    return DesiredPool(name=name, node_local=node_local,
                       node_selector=dict(sel.node_selector) if (not node_local and sel.node_selector is not None) else None,
                       all_nodes=(not node_local and sel.node_selector is None), slices=slices)


def build_pools(pools: Any, *, driver: str, node_name: str, limits: Limits | None = None,
                server: ServerInfo | None = None, taints_possible: bool = False) -> tuple[dict[str, DesiredPool], Report]:
    """Convert, validate and split a driver's pools (DriverInventory, {name: Pool}, [Pool] or a Pool).

    Returns the desired pools by published name and a Report of what was left out and why.
    """
    limits = limits or Limits.for_server(server)
    report = Report()
    errs = driver_name_errors(driver)
    if errs:
        raise ValueError(f"invalid driver name {driver!r}: {'; '.join(errs)}")
    out: dict[str, DesiredPool] = {}
    for p in _iter_pools(pools):
        dp = build_pool(p, driver=driver, node_name=node_name, limits=limits, report=report,
                        taints_possible=taints_possible)
        if dp is None:
            continue
        if dp.name in out:
            report.add(Issue(dp.name, None, "pool", "two pools map to the same published name; the second is ignored"))
            continue
        out[dp.name] = dp
    return out, report


# --- object rendering --------------------------------------------------------------------------


def index_width(count: int) -> int:
    return max(5, len(f"{max(count - 1, 0):x}"))


def generate_name(index: int, count: int, driver: str, owner: str | None) -> str:
    """The Go controller's generateName: ``<hex index, zero-padded>-<driver>-[<owner>-]``."""
    base = f"{index:0{index_width(count)}x}-{driver}-" + (f"{owner}-" if owner else "")
    return base


def owner_reference(node_name: str, node_uid: str) -> dict:
    return {"apiVersion": "v1", "kind": "Node", "name": node_name, "uid": node_uid, "controller": True}


def slice_object(dp: DesiredPool, index: int, *, driver: str, node_name: str, node_uid: str | None,
                 generation: int) -> dict:
    """A complete ResourceSlice (without name: ``metadata.generateName``) for slice ``index``."""
    count = len(dp.slices)
    meta: dict = {"generateName": generate_name(index, count, driver, node_name)}
    if node_uid:
        meta["ownerReferences"] = [owner_reference(node_name, node_uid)]
    if not dp.node_local:
        meta["labels"] = {PUBLISHER_LABEL: node_name}
    spec: dict = {"driver": driver,
                  "pool": {"name": dp.name, "generation": generation, "resourceSliceCount": count},
                  **dp.selection(node_name), **dp.slices[index]}
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": meta, "spec": spec}


def desired_slices(pools: Any, *, driver: str, node_name: str, node_uid: str | None = None,
                   server: ServerInfo | None = None, taints_possible: bool = False,
                   generation: int = 1) -> tuple[list[dict], Report]:
    """Pure function for ``dra-framework discover -o yaml``: the ResourceSlices the driver would
    publish (generation 1, names left to the server via generateName) and the validation report."""
    desired, report = build_pools(pools, driver=driver, node_name=node_name, server=server,
                                  taints_possible=taints_possible)
    out = []
    for dp in desired.values():
        for i in range(len(dp.slices)):
            out.append(slice_object(dp, i, driver=driver, node_name=node_name, node_uid=node_uid,
                                    generation=generation))
    return out, report
