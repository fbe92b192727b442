"""Splitting one pool into ResourceSlice contents, within the API limits, in a stable order.

Rules (docs/resourceslices.md):

- Devices are sorted by name and cut into chunks of 128; of 64 when any device of the pool uses
  taints, counter consumption or list attributes (or the caller says health taints may appear,
  ``advanced=True``), so that one new taint does not re-split the pool.
- Kubernetes 1.35+: counter sets go in their own slices (≤8 sets per slice, sorted by name), placed
  *before* the device slices so that a change in the number of devices does not rename them.
- Kubernetes 1.34: a device must be in the same slice as the counter sets it consumes, and a slice
  has ≤32 counters over all its sets and ≤1024 device counters. Counter sets and their consuming
  devices are grouped; groups are packed in name order; devices of a group that does not fit one
  slice are reported and left out.
- An empty pool is one slice without devices.

Each returned slice is a dict with ``devices`` and/or ``sharedCounters`` (absent when empty).
"""
from __future__ import annotations

from .apiversions import Limits
from .validate import Report


def _chunks(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def _device_slices(devices: list[dict], per_slice: int) -> list[dict]:
    return [{"devices": chunk} for chunk in _chunks(devices, per_slice)]


def split_pool(devices: list[dict], counter_sets: list[dict], limits: Limits, *, advanced: bool,
               pool: str = "", report: Report | None = None) -> list[dict]:
    devices = sorted(devices, key=lambda d: d["name"])
    counter_sets = sorted(counter_sets, key=lambda c: c["name"])
    per_slice = limits.max_devices_advanced if advanced else limits.max_devices
    if limits.separate_counter_slices:
        out: list[dict] = []
        step = limits.max_counter_sets_per_slice or len(counter_sets) or 1
        out += [{"sharedCounters": chunk} for chunk in _chunks(counter_sets, step)]
        out += _device_slices(devices, per_slice)
        return out or [{}]
    return _split_134(devices, counter_sets, limits, per_slice, pool, report)


def _split_134(devices: list[dict], counter_sets: list[dict], limits: Limits, per_slice: int,
               pool: str, report: Report | None) -> list[dict]:
    if not counter_sets:
        return _device_slices(devices, per_slice) or [{}]
    # Union-find over counter sets, joined by devices that consume more than one.
    parent = {c["name"]: c["name"] for c in counter_sets}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    plain: list[dict] = []
    for d in devices:
        sets = [c["counterSet"] for c in d.get("consumesCounters") or [] if c["counterSet"] in parent]
        if not sets:
            plain.append(d)
            continue
        for s in sets[1:]:
            parent[find(s)] = find(sets[0])
    groups: dict[str, dict] = {}
    for c in counter_sets:
        g = groups.setdefault(find(c["name"]), {"sets": [], "devices": []})
        g["sets"].append(c)
    for d in devices:
        cons = d.get("consumesCounters") or []
        if cons and cons[0]["counterSet"] in parent:
            groups[find(cons[0]["counterSet"])]["devices"].append(d)

    max_counters = limits.max_counters_per_slice or 32
    max_dev_counters = limits.max_device_counters_per_slice or 1024

    def size(g: dict) -> tuple[int, int, int]:
        return (sum(len(c["counters"]) for c in g["sets"]), len(g["devices"]),
                sum(len(c["counters"]) for d in g["devices"] for c in d["consumesCounters"]))

    out: list[dict] = []
    cur: dict = {"sharedCounters": [], "devices": []}
    cur_size = [0, 0, 0]
    for key in sorted(groups):
        g = groups[key]
        n_counters, n_dev, n_devc = size(g)
        if n_counters > max_counters or n_dev > per_slice or n_devc > max_dev_counters:
            if report is not None:
                for d in g["devices"]:
                    report.invalid(pool, d["name"], "consumesCounters",
                                   f"counter sets {[c['name'] for c in g['sets']]} and the devices consuming them do not fit "
                                   f"one slice on Kubernetes 1.{limits.minor} (counters {n_counters}/{max_counters}, "
                                   f"devices {n_dev}/{per_slice}, device counters {n_devc}/{max_dev_counters})")
            g = {"sets": g["sets"], "devices": []}
            n_counters, n_dev, n_devc = size(g)
            if n_counters > max_counters:
                if report is not None:
                    for c in g["sets"]:
                        report.invalid_counter_sets.setdefault(pool, set()).add(c["name"])
                        report.warn(pool, None, f"sharedCounters[{c['name']}]", "left out: too many counters for one 1.34 slice")
                continue
        if (cur_size[0] + n_counters > max_counters or cur_size[1] + n_dev > per_slice
                or cur_size[2] + n_devc > max_dev_counters):
            out.append(cur)
            cur, cur_size = {"sharedCounters": [], "devices": []}, [0, 0, 0]
        cur["sharedCounters"] += g["sets"]
        cur["devices"] += g["devices"]
        cur_size = [cur_size[0] + n_counters, cur_size[1] + n_dev, cur_size[2] + n_devc]
    if cur["sharedCounters"] or cur["devices"]:
        out.append(cur)
    for s in out:
        s["devices"].sort(key=lambda d: d["name"])
        if not s["devices"]:
            del s["devices"]
    out += _device_slices(plain, per_slice)
    return out or [{}]
