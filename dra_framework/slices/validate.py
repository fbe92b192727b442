"""Local validation of ResourceSlice content with the API server's rules (resource.k8s.io/v1).

The rules mirror kubernetes ``pkg/apis/resource/validation/validation.go`` (1.34–1.37) and the
limits in ``k8s.io/api/resource/v1/types.go``
(docs/resourceslices.md#validation-before-anything-is-written). They run before anything is
published so that one bad device is left out and reported instead of the API server rejecting
the whole slice (and with it every other device of the slice).

Policy:

- A device with invalid data is left out of the published pool and reported as an ``Issue``
  naming the pool, the device and the field. The rest of the pool is still published.
- A counter set with invalid data is left out; devices consuming it are then invalid too.
- A version attribute that is not SemVer is normalized (``normalize_version``); one that cannot
  be normalized is published as a string attribute and reported as a warning.
- List attributes need a 1.36+ server (DRAListTypeAttributes). On older servers they are left
  out of the device (warning), because the server would drop the list value and then reject the
  attribute for having no value.

Name and version formats are in :mod:`.formats`, :class:`Issue`/:class:`Report` in
:mod:`.report`; both are re-exported here.
"""
from __future__ import annotations

import itertools
from decimal import Decimal
from typing import Any, Iterable

from ..kubenames import is_dns_label, is_dns_subdomain
from ..model.attributes import Version, quantity_value
from .apiversions import Limits
from .formats import (ATTRIBUTE_MAX_VALUE_LENGTH, DEVICE_MAX_DOMAIN_LENGTH, DEVICE_MAX_ID_LENGTH, DRIVER_NAME_MAX_LENGTH,
                      INT64_MAX, INT64_MIN, MAX_ATTRIBUTE_VALUES, MAX_ATTRIBUTES_AND_CAPACITIES,
                      MAX_COUNTERS_PER_CONSUMPTION, MAX_COUNTERS_PER_SET, MAX_VALID_VALUES, POOL_NAME_MAX_LENGTH,
                      SEMVER_RE, driver_name_errors, label_name_errors, label_value_errors, normalize_version,
                      pool_name_errors, qualified_name_errors)
from .report import Issue, Report

# --- per-value checks used by convert.py --------------------------------------------------------


def quantity_errors(q: Any) -> list[str]:
    if isinstance(q, bool) or not isinstance(q, (int, str)):
        return [f"quantity must be an int or a quantity string, not {type(q).__name__}"]
    try:
        quantity_value(q)
    except (ValueError, ArithmeticError) as exc:
        return [str(exc) or f"invalid quantity {q!r}"]
    return []


def qv(q: Any) -> Decimal:
    return quantity_value(q)


def string_value_errors(s: str) -> list[str]:
    if len(s) > ATTRIBUTE_MAX_VALUE_LENGTH:
        return [f"string value is {len(s)} characters long, at most {ATTRIBUTE_MAX_VALUE_LENGTH} are allowed"]
    return []


def int_value_errors(i: int) -> list[str]:
    if not INT64_MIN <= i <= INT64_MAX:
        return ["int value is out of the int64 range"]
    return []


def attribute_value_kind(v: Any) -> str | None:
    """Map a model attribute value to its DeviceAttribute key, or None when unsupported."""
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, str):
        return "string"
    if isinstance(v, Version):
        return "version"
    if isinstance(v, (list, tuple)):
        if not v:
            return "empty-list"
        kinds = {attribute_value_kind(x) for x in v}
        if len(kinds) != 1:
            return None
        k = kinds.pop()
        return {"bool": "bools", "int": "ints", "string": "strings", "version": "versions"}.get(k or "")
    return None


def dedupe_names(names: Iterable[str]) -> set[str]:
    seen: set[str] = set()
    dups: set[str] = set()
    for n in names:
        (dups if n in seen else seen).add(n)
    return dups


# --- API-object checks (dicts in resource.k8s.io/v1 JSON form) ----------------------------------

Errors = list[tuple[str, str]]  # (field path, message)

_ATTR_SCALARS = ("int", "bool", "string", "version")
_ATTR_LISTS = ("ints", "bools", "strings", "versions")


def attribute_errors(name: str, attr: dict, limits: Limits) -> Errors:
    path = f"attributes[{name}]"
    errs: Errors = [(path, m) for m in qualified_name_errors(name)]
    keys = [k for k in (*_ATTR_SCALARS, *_ATTR_LISTS) if attr.get(k) is not None]
    if len(keys) != 1:
        errs.append((path, "exactly one value must be specified"))
        return errs
    k = keys[0]
    v = attr[k]
    if k in _ATTR_LISTS and not limits.list_attributes:
        errs.append((f"{path}.{k}", f"list attributes need Kubernetes 1.36+ (server is 1.{limits.minor})"))
        return errs
    items = v if k in _ATTR_LISTS else [v]
    if k in _ATTR_LISTS and not v:
        errs.append((f"{path}.{k}", "must not be empty if specified"))
    for i, item in enumerate(items):
        ipath = f"{path}.{k}" + (f"[{i}]" if k in _ATTR_LISTS else "")
        if k in ("string", "strings", "version", "versions"):
            if not isinstance(item, str):
                errs.append((ipath, "must be a string"))
                continue
            errs += [(ipath, m) for m in string_value_errors(item)]
            if k in ("version", "versions") and not SEMVER_RE.match(item):
                errs.append((ipath, f"{item!r} must be a string compatible with semver.org spec 2.0.0"))
        elif k in ("int", "ints"):
            if isinstance(item, bool) or not isinstance(item, int):
                errs.append((ipath, "must be an integer"))
            else:
                errs += [(ipath, m) for m in int_value_errors(item)]
        elif not isinstance(item, bool):
            errs.append((ipath, "must be a boolean"))
    return errs


def request_policy_errors(path: str, value: Any, policy: dict) -> Errors:
    errs: Errors = []
    for key in ("default",):
        if policy.get(key) is not None:
            errs += [(f"{path}.{key}", m) for m in quantity_errors(policy[key])]
    vv = policy.get("validValues") or []
    rng = policy.get("validRange")
    for i, q in enumerate(vv):
        errs += [(f"{path}.validValues[{i}]", m) for m in quantity_errors(q)]
    if rng is not None:
        for key in ("min", "max", "step"):
            if rng.get(key) is not None:
                errs += [(f"{path}.validRange.{key}", m) for m in quantity_errors(rng[key])]
    if errs:
        return errs
    cap = qv(value)
    if vv and rng is not None:
        return [(path, "exactly one policy can be specified, cannot specify validValues and validRange at the same time")]
    default = qv(policy["default"]) if policy.get("default") is not None else None
    if vv:
        if default is None:
            return [(f"{path}.default", "required when validValues is defined")]
        vals = [qv(q) for q in vv]
        if len(vals) > MAX_VALID_VALUES:
            return [(f"{path}.validValues", f"must have at most {MAX_VALID_VALUES} items")]
        if any(a > b for a, b in itertools.pairwise(vals)):
            errs.append((f"{path}.validValues", "values must be sorted in ascending order"))
        if len(set(vals)) != len(vals):
            errs.append((f"{path}.validValues", "values must be unique"))
        if any(v > cap for v in vals):
            errs.append((f"{path}.validValues", f"option is larger than capacity value {value}"))
        if default not in vals:
            errs.append((f"{path}.validValues", "default value is not valid according to the requestPolicy"))
    elif rng is not None:
        if default is None:
            return [(f"{path}.default", "required when validRange is defined")]
        if rng.get("min") is None:
            return [(f"{path}.validRange.min", "required when validRange is defined")]
        lo = qv(rng["min"])
        if lo < 0:
            errs.append((f"{path}.validRange.min", "must be greater than or equal to 0"))
        if lo > cap:
            errs.append((f"{path}.validRange.min", f"min is larger than capacity value {value}"))
        if default < lo:
            errs.append((f"{path}.default", "default is less than min"))
        hi = qv(rng["max"]) if rng.get("max") is not None else None
        if hi is not None:
            if lo > hi:
                errs.append((f"{path}.validRange.max", "min is larger than max"))
            if hi > cap:
                errs.append((f"{path}.validRange.max", f"max is larger than capacity value {value}"))
            if default > hi:
                errs.append((f"{path}.default", "default is more than max"))
        if rng.get("step") is not None:
            step = qv(rng["step"])
            if step <= 0:
                errs.append((f"{path}.validRange.step", "must be greater than zero"))
            else:
                if lo + step > cap:
                    errs.append((f"{path}.validRange.step", f"one step is larger than capacity value {value}"))
                for name, val in (("default", default), ("max", hi)):
                    if val is not None and (val - lo) % step != 0:
                        errs.append((f"{path}.validRange.step", f"{name} is not a multiple of step from min"))
    return errs


def taint_errors(path: str, taint: dict, limits: Limits) -> Errors:
    errs: Errors = [(f"{path}.key", m) for m in label_name_errors(taint.get("key") or "")]
    if taint.get("value"):
        errs += [(f"{path}.value", m) for m in label_value_errors(taint["value"])]
    eff = taint.get("effect")
    if not eff:
        errs.append((f"{path}.effect", "required"))
    elif eff not in limits.taint_effects:
        errs.append((f"{path}.effect", f"unsupported value {eff!r}; supported on 1.{limits.minor}: {', '.join(limits.taint_effects)}"))
    return errs


def counters_errors(path: str, counters: Any, max_count: int) -> Errors:
    if not counters:
        return [(path, "required")]
    if len(counters) > max_count:
        return [(path, f"must have at most {max_count} counters, has {len(counters)}")]
    errs: Errors = []
    for name, c in counters.items():
        if not is_dns_label(name):
            errs.append((f"{path}[{name}]", "counter name must be a DNS label"))
        if not isinstance(c, dict) or c.get("value") is None:
            errs.append((f"{path}[{name}].value", "required"))
        else:
            errs += [(f"{path}[{name}].value", m) for m in quantity_errors(c["value"])]
    return errs


def device_errors(dev: dict, limits: Limits, driver: str | None = None) -> Errors:
    """Check one Device dict with the API server's rules (per-device rules only)."""
    errs: Errors = []
    name = dev.get("name") or ""
    if not is_dns_label(name):
        errs.append(("name", f"{name!r} must be a DNS label (lowercase alphanumerics and '-', at most 63 characters)"))
    attrs = dev.get("attributes") or {}
    caps = dev.get("capacity") or {}
    if len(attrs) + len(caps) > MAX_ATTRIBUTES_AND_CAPACITIES:
        errs.append(("attributes", "the total number of attributes and capacities must not exceed "
                                   f"{MAX_ATTRIBUTES_AND_CAPACITIES} (has {len(attrs) + len(caps)})"))
    if limits.max_attribute_values is not None:
        n = 0
        for a in attrs.values():
            lk = next((k for k in _ATTR_LISTS if a.get(k)), None)
            n += len(a[lk]) if lk else 1
        if n > limits.max_attribute_values:
            errs.append(("attributes", f"the total number of attribute values must not exceed {limits.max_attribute_values} (has {n})"))
    for aname, attr in attrs.items():
        errs += attribute_errors(aname, attr, limits)
    if driver:
        bare = {a for a in list(attrs) + list(caps) if "/" not in a}
        for q in list(attrs) + list(caps):
            if q.startswith(driver + "/") and q[len(driver) + 1:] in bare:
                errs.append((f"attributes[{q}]", f"published both as {q!r} and without the driver's domain"))
    multi = bool(dev.get("allowMultipleAllocations"))
    for cname, cap in caps.items():
        path = f"capacity[{cname}]"
        errs += [(path, m) for m in qualified_name_errors(cname)]
        if not isinstance(cap, dict) or cap.get("value") is None:
            errs.append((f"{path}.value", "required"))
            continue
        qerrs = quantity_errors(cap["value"])
        errs += [(f"{path}.value", m) for m in qerrs]
        pol = cap.get("requestPolicy")
        if pol is not None:
            if not multi:
                errs.append((f"{path}.requestPolicy", "allowMultipleAllocations must be true"))
            elif not qerrs:
                errs += request_policy_errors(f"{path}.requestPolicy", cap["value"], pol)
    taints = dev.get("taints") or []
    if len(taints) > limits.max_taints:
        errs.append(("taints", f"must have at most {limits.max_taints} taints on 1.{limits.minor}, has {len(taints)}"))
    else:
        for i, t in enumerate(taints):
            errs += taint_errors(f"taints[{i}]", t, limits)
    cons = dev.get("consumesCounters") or []
    if limits.max_counters_per_device is not None:
        total = sum(len(c.get("counters") or {}) for c in cons)
        if total > limits.max_counters_per_device:
            errs.append(("consumesCounters", f"at most {limits.max_counters_per_device} counters over all entries "
                                             f"on 1.{limits.minor}, has {total}"))
    if limits.max_consumptions_per_device is not None and len(cons) > limits.max_consumptions_per_device:
        errs.append(("consumesCounters", f"must have at most {limits.max_consumptions_per_device} entries, has {len(cons)}"))
    else:
        seen: set[str] = set()
        for i, c in enumerate(cons):
            path = f"consumesCounters[{i}]"
            cs = c.get("counterSet") or ""
            if not is_dns_label(cs):
                errs.append((f"{path}.counterSet", f"{cs!r} must be a DNS label"))
            if cs in seen:
                errs.append((f"{path}.counterSet", f"duplicate counter set {cs!r}"))
            seen.add(cs)
            errs += counters_errors(f"{path}.counters", c.get("counters"), MAX_COUNTERS_PER_CONSUMPTION)
    return errs


def counter_set_errors(cs: dict, limits: Limits) -> Errors:
    errs: Errors = []
    name = cs.get("name") or ""
    if not is_dns_label(name):
        errs.append(("name", f"{name!r} must be a DNS label"))
    errs += counters_errors("counters", cs.get("counters"), MAX_COUNTERS_PER_SET)
    return errs


def _has_advanced(devices: list[dict]) -> bool:
    return any(d.get("taints") or d.get("consumesCounters")
               or any(a.get(k) is not None for a in (d.get("attributes") or {}).values() for k in _ATTR_LISTS)
               for d in devices)


def slice_errors(spec: dict, limits: Limits) -> Errors:
    """Check a whole ResourceSlice spec like the API server (used as a final guard and in tests)."""
    errs: Errors = [("driver", m) for m in driver_name_errors(spec.get("driver") or "")]
    pool = spec.get("pool") or {}
    errs += [("pool.name", m) for m in pool_name_errors(pool.get("name") or "")]
    if int(pool.get("resourceSliceCount") or 0) <= 0:
        errs.append(("pool.resourceSliceCount", "must be greater than zero"))
    if int(pool.get("generation") or 0) < 0:
        errs.append(("pool.generation", "must be greater than or equal to zero"))
    sel = [k for k in ("nodeName", "nodeSelector", "allNodes", "perDeviceNodeSelection") if spec.get(k)]
    if len(sel) != 1:
        errs.append(("spec", "exactly one of nodeName, nodeSelector, allNodes, perDeviceNodeSelection is required"))
    if spec.get("nodeName") and not is_dns_subdomain(spec["nodeName"]):
        errs.append(("nodeName", "must be a DNS subdomain"))
    ns = spec.get("nodeSelector")
    if ns is not None and len(ns.get("nodeSelectorTerms") or []) != 1:
        errs.append(("nodeSelector.nodeSelectorTerms", "must have exactly one node selector term"))
    devices = spec.get("devices")
    counters = spec.get("sharedCounters")
    if limits.separate_counter_slices and devices is not None and counters is not None:
        errs.append(("spec", "only one of sharedCounters or devices is allowed"))
    devices = devices or []
    max_dev = limits.max_devices_advanced if limits.advanced_device_limit and _has_advanced(devices) else limits.max_devices
    if len(devices) > max_dev:
        errs.append(("devices", f"must have at most {max_dev} devices, has {len(devices)}"))
    else:
        for i, d in enumerate(devices):
            errs += [(f"devices[{i}].{f}", m) for f, m in device_errors(d, limits)]
        for dup in sorted(dedupe_names(d.get("name") for d in devices)):
            errs.append(("devices", f"duplicate device name {dup!r}"))
    counters = counters or []
    if limits.max_counter_sets_per_slice is not None and len(counters) > limits.max_counter_sets_per_slice:
        errs.append(("sharedCounters", f"must have at most {limits.max_counter_sets_per_slice} counter sets, has {len(counters)}"))
    else:
        for i, c in enumerate(counters):
            errs += [(f"sharedCounters[{i}].{f}", m) for f, m in counter_set_errors(c, limits)]
        for dup in sorted(dedupe_names(c.get("name") for c in counters)):
            errs.append(("sharedCounters", f"duplicate counter set {dup!r}"))
    if limits.max_counters_per_slice is not None:
        total = sum(len(c.get("counters") or {}) for c in counters)
        if total > limits.max_counters_per_slice:
            errs.append(("sharedCounters", f"at most {limits.max_counters_per_slice} counters across all sets "
                                           f"on 1.{limits.minor}, has {total}"))
    if not limits.separate_counter_slices:
        # 1.34: consumed counter sets and counters must be defined in this slice's sharedCounters.
        defined = {c.get("name"): set(c.get("counters") or {}) for c in counters}
        for i, d in enumerate(devices):
            for j, c in enumerate(d.get("consumesCounters") or []):
                cs = c.get("counterSet")
                if cs not in defined:
                    errs.append((f"devices[{i}].consumesCounters[{j}].counterSet",
                                 f"{cs!r} must reference a counter set defined in the sharedCounters of the "
                                 f"same slice on 1.{limits.minor}"))
                    continue
                for name in sorted(set(c.get("counters") or {}) - defined[cs]):
                    errs.append((f"devices[{i}].consumesCounters[{j}].counters[{name}]",
                                 f"must reference a counter of counter set {cs!r} in the same slice"))
    if limits.max_device_counters_per_slice is not None:
        total = sum(len(c.get("counters") or {}) for d in devices for c in d.get("consumesCounters") or [])
        if total > limits.max_device_counters_per_slice:
            errs.append(("devices", f"at most {limits.max_device_counters_per_slice} device counters per slice "
                                    f"on 1.{limits.minor}, has {total}"))
    return errs


__all__ = [
    "ATTRIBUTE_MAX_VALUE_LENGTH", "DEVICE_MAX_DOMAIN_LENGTH", "DEVICE_MAX_ID_LENGTH", "DRIVER_NAME_MAX_LENGTH",
    "MAX_ATTRIBUTES_AND_CAPACITIES", "MAX_ATTRIBUTE_VALUES", "MAX_COUNTERS_PER_CONSUMPTION", "MAX_COUNTERS_PER_SET",
    "MAX_VALID_VALUES", "POOL_NAME_MAX_LENGTH", "SEMVER_RE", "Issue", "Report", "attribute_errors",
    "attribute_value_kind", "counter_set_errors", "counters_errors", "dedupe_names", "device_errors",
    "driver_name_errors", "int_value_errors", "is_dns_label", "is_dns_subdomain", "label_name_errors",
    "label_value_errors", "normalize_version", "pool_name_errors", "quantity_errors", "qualified_name_errors",
    "qv", "request_policy_errors", "slice_errors", "string_value_errors", "taint_errors",
]
