"""What the conformance tests share: the backend under test, in-process discovery, the devices a
running daemon published, device-pinned claims, allocation batches and leftover snapshots."""
from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Sequence

from ..driver import load_config

#: Attribute the suite adds to every device (through the config's ``deviceAttributes``) so a CEL
#: selector can pin a claim to one device: ``device.attributes['conformance.dra.dev'].device``.
PIN_DOMAIN = "conformance.dra.dev"
PIN_KEY = f"{PIN_DOMAIN}/device"
#: resource.k8s.io/v1 limits: attributes + capacities per device, requests per claim.
MAX_ATTRS_AND_CAPS = 32
MAX_REQUESTS = 32
NAMESPACE = "dra-conformance"


@dataclass
class Target:
    """``drivers[index]`` of the config file ``source`` is the driver that serves ``backend``."""

    backend: str
    source: str
    config: dict[str, Any]
    index: int

    @property
    def driver(self) -> str:
        return self.config["drivers"][self.index]["name"]

    def driver_config(self, host_copies: Path | None = None, **settings: Any) -> dict[str, Any]:
        """The config with only this driver (other drivers of the file left out) plus ``settings``.
        With ``host_copies``, every backend's ``hostRoot`` directory (other than ``/``) is copied
        under it and the copy used: backends may write into their host tree (driver binds), and
        the copy's tree is part of the leftovers check."""
        cfg = copy.deepcopy(self.config)
        cfg["drivers"] = [cfg["drivers"][self.index]]
        cfg.update(settings)
        if host_copies is not None:
            for j, b in enumerate(cfg["drivers"][0]["backends"]):
                root = (b.get("options") or {}).get("hostRoot")
                if root and os.path.isdir(root) and os.path.realpath(root) != "/":
                    dst = host_copies / f"host-{j}"
                    shutil.copytree(root, dst, symlinks=True)
                    b["options"]["hostRoot"] = str(dst)
        return cfg


def select_target(config_file: str, backend: str) -> Target:
    """The first driver of ``config_file`` with a backend named ``backend``; ValueError if none."""
    cfg = load_config(config_file)
    drivers = cfg.get("drivers") or []
    for i, d in enumerate(drivers):
        if any(b.get("name") == backend for b in d.get("backends") or []):
            return Target(backend, str(config_file), cfg, i)
    names = sorted({b.get("name") for d in drivers for b in d.get("backends") or []})
    raise ValueError(f"{config_file}: no driver uses backend {backend!r} (backends in the file: {names})")


# --- discovery in this process, as `dra-framework discover` does it ---------------------------


@dataclass
class Discovery:
    first: list[str]                  # sorted "pool/device" keys ("" pool = the node pool)
    second: list[str]                 # the same backend objects asked again (a rediscovery)
    pools: dict[str, list[str]]       # backend pool name ("" = default) -> device names, first run
    errors: list[str]                 # what would keep devices out of the ResourceSlices
    config_types: list[type] = field(default_factory=list)  # the backend's OpaqueConfig types
    full: set[str] = field(default_factory=set)  # "pool/device" at the attributes+capacities limit


def discover_twice(target: Target, workdir: Path, node: str) -> Discovery:
    """Build the backends of the target driver like the daemon does, call ``dra_discover`` twice."""
    import yaml

    from ...composition import build_backends, discover
    from ...config import load_settings
    from ...plugins import Registry
    from ...slices import build_pools

    path = workdir / "discover.yaml"
    path.write_text(yaml.safe_dump(target.driver_config(workdir, nodeName=node, stateDir=str(workdir / "state"),
                                                        cdiRoot=str(workdir / "cdi"))))

    def keys(inv: Any) -> list[str]:
        return sorted(f"{pool or ''}/{d.name}" for pool, p in inv.pools.items() for d in p.devices)

    async def run() -> Discovery:
        settings = load_settings(path)
        backends = build_backends(settings, 0, settings.drivers[0], Registry())
        first = await discover(backends)
        second = await discover(backends)
        _desired, report = build_pools(first, driver=target.driver, node_name=node)
        types: list[type] = []
        for b in backends:
            if b.type_name == target.backend:
                types.extend(await b.hooks.config_types())
        pools = {pool or "": [d.name for d in p.devices] for pool, p in first.pools.items()}
        full = {f"{pool or ''}/{d.name}" for pool, p in first.pools.items() for d in p.devices
                if len(d.attributes) + len(d.capacity) >= MAX_ATTRS_AND_CAPS}
        return Discovery(keys(first), keys(second), pools, [str(e) for e in report.errors], types, full)

    return asyncio.run(run())


def pin_rules(discovery: Discovery) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """``deviceAttributes`` rules giving every discovered device the attribute :data:`PIN_KEY` =
    ``dev-<i>``, and the map ``dev-<i>`` → ``pool/device`` (devices already at the attribute
    limit are left out)."""
    rules: list[dict[str, Any]] = []
    ids: dict[str, str] = {}
    for pool, names in sorted(discovery.pools.items()):
        for name in names:
            if f"{pool}/{name}" in discovery.full:
                continue
            pin = f"dev-{len(ids)}"
            ids[pin] = f"{pool}/{name}"
            rule: dict[str, Any] = {"devices": [name], "attributes": {PIN_KEY: pin}}
            if pool:
                rule["pool"] = pool
            rules.append(rule)
    return rules, ids


def with_rules(cfg: dict[str, Any], backend: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
    cfg = copy.deepcopy(cfg)
    for b in cfg["drivers"][0]["backends"]:
        if b.get("name") == backend:
            b["deviceAttributes"] = [*(b.get("deviceAttributes") or []), *rules]
    return cfg


# --- what the API server holds ------------------------------------------------------------------


def slices(cp: Any, driver: str, node: str) -> list[dict[str, Any]]:
    """The ResourceSlices of ``driver`` for ``node``, as the API server serves them (raw JSON, so
    no field is lost to an older client model). ``cp``: the ControlPlane."""
    from urllib.parse import quote

    got = cp.get(f"/apis/resource.k8s.io/v1/resourceslices?fieldSelector={quote(f'spec.driver={driver}')}")
    return [s for s in got.get("items") or [] if s["spec"].get("nodeName") == node]


@dataclass
class Published:
    devices: dict[str, dict[str, Any]]                     # "pool/device" -> device
    counters: dict[tuple[str, str], dict[str, Decimal]]    # (pool, counter set) -> counter -> value

    @property
    def names(self) -> list[str]:
        return sorted(k.split("/", 1)[1] for k in self.devices)

    def pinned(self) -> dict[str, str]:
        """``dev-<i>`` → ``pool/device`` for devices carrying :data:`PIN_KEY`."""
        out = {}
        for key, d in self.devices.items():
            attr = (d.get("attributes") or {}).get(PIN_KEY)
            if attr:
                out[attr["string"]] = key
        return out


def published(cp: Any, driver: str, node: str) -> Published:
    from ...model.attributes import quantity_value

    devices: dict[str, dict[str, Any]] = {}
    counters: dict[tuple[str, str], dict[str, Decimal]] = {}
    for s in slices(cp, driver, node):
        pool = s["spec"]["pool"]["name"]
        for cs in s["spec"].get("sharedCounters") or []:
            counters[(pool, cs["name"])] = {k: quantity_value(v["value"]) for k, v in cs["counters"].items()}
        for d in s["spec"].get("devices") or []:
            devices[f"{pool}/{d['name']}"] = d
    return Published(devices, counters)


def batches(pub: Published, keys: list[str]) -> list[list[str]]:
    """Split ``keys`` into groups that fit together (shared counters, :data:`MAX_REQUESTS`), so
    one claim per group can ask for each of its devices: first fit, in the given order."""
    groups: list[tuple[list[str], dict[tuple[str, str], dict[str, Decimal]]]] = []
    for key in keys:
        pool = key.split("/", 1)[0]
        need = [((pool, c["counterSet"]), {k: _q(v["value"]) for k, v in c["counters"].items()})
                for c in pub.devices[key].get("consumesCounters") or []]
        for members, left in groups:
            if len(members) < MAX_REQUESTS and all(left.get(cs, pub.counters.get(cs, {})).get(k, Decimal(0)) >= v
                                                   for cs, want in need for k, v in want.items()):
                break
        else:
            members, left = [], {}
            groups.append((members, left))
        members.append(key)
        for cs, want in need:
            have = left.setdefault(cs, dict(pub.counters.get(cs, {})))
            for k, v in want.items():
                have[k] = have.get(k, Decimal(0)) - v
    return [m for m, _ in groups]


def _q(v: Any) -> Decimal:
    from ...model.attributes import quantity_value

    return quantity_value(v)


def pinned_claim(device_class: str, pins: list[str], configs: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """A ResourceClaim spec with one request ``d<i>`` per pinned device, tolerating any taint."""
    reqs = [{"name": f"d{i}", "exactly": {
        "deviceClassName": device_class,
        "selectors": [{"cel": {"expression": f"device.attributes['{PIN_DOMAIN}'].device == '{pin}'"}}],
        "tolerations": [{"operator": "Exists"}]}} for i, pin in enumerate(pins)]
    spec: dict[str, Any] = {"devices": {"requests": reqs}}
    if configs:
        spec["devices"]["config"] = list(configs)
    return spec


# --- leftovers ------------------------------------------------------------------------------------

#: Files a backend appends to as a log (never state to undo).
LOG_SUFFIXES = (".log", ".jsonl")


def tree(root: Path) -> dict[str, Any]:
    """``relative path`` → content of every file under ``root``: parsed JSON (compared by value),
    else a digest; logs, dot-files and lock files skipped."""
    out: dict[str, Any] = {}
    if not root.exists():
        return out
    for dirpath, dirnames, files in os.walk(root):
        dirnames.sort()
        links = [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]  # not followed
        for f in sorted([*files, *links]):
            p = Path(dirpath, f)
            if f.startswith(".") or f.endswith(LOG_SUFFIXES) or f.endswith(".lock"):
                continue
            if p.is_symlink():
                out[str(p.relative_to(root))] = "-> " + os.readlink(p)
                continue
            data = p.read_bytes() if p.is_file() else b""
            if f.endswith(".json"):
                try:
                    out[str(p.relative_to(root))] = json.loads(data)
                    continue
                except ValueError:
                    pass
            out[str(p.relative_to(root))] = "sha256:" + hashlib.sha256(data).hexdigest()[:16]
    return out


def diff(before: Any, now: Any, path: str = "", limit: int = 12) -> list[str]:
    """Where two snapshots differ, one line per difference (``path: before -> now``)."""
    if isinstance(before, dict) and isinstance(now, dict):
        out: list[str] = []
        for k in sorted(set(before) | set(now), key=str):
            sub = f"{path}/{k}" if path else str(k)
            if k not in now:
                out.append(f"{sub}: gone")
            elif k not in before:
                out.append(f"{sub}: new: {json.dumps(now[k], default=str)[:200]}")
            else:
                out += diff(before[k], now[k], sub, limit)
            if len(out) >= limit:
                return out[:limit]
        return out
    if before != now:
        return [f"{path}: {json.dumps(before, default=str)[:200]} -> {json.dumps(now, default=str)[:200]}"]
    return []


def snapshot(drv: Any, driver: str, probe: Callable[[Any], Any] | None = None) -> dict[str, Any]:
    """What must be back to its start state after every claim is unprepared: the driver's
    checkpoint entries, the CDI spec files, the state dir tree, and the backend's own probe."""
    snap: dict[str, Any] = {
        "checkpoint claims": sorted(drv.checkpoint(driver)),
        "CDI spec files": [p.name for p in drv.cdi_specs()],
        "state dir files": tree(drv.state_dir),
    }
    for root in host_copies(drv.config, drv.workdir.parent):
        snap[f"host tree {root.name}"] = tree(root)
    if probe is not None:
        snap["backend probe"] = probe(drv)
    return snap


def load_callable(option: str, spec: str | None) -> Callable[..., Any] | None:
    """``module:name`` → that attribute (``--dra-leftovers``, ``--dra-host``); None if not given."""
    if not spec:
        return None
    import importlib

    mod, _, fn = spec.partition(":")
    if not fn:
        raise ValueError(f"{option}={spec}: expected module:name")
    return getattr(importlib.import_module(mod), fn)


def host_copies(cfg: dict[str, Any], under: Path) -> list[Path]:
    """The ``hostRoot`` directories of ``cfg`` that :meth:`Target.driver_config` copied under ``under``."""
    roots = [(b.get("options") or {}).get("hostRoot") for b in cfg["drivers"][0]["backends"]]
    return [Path(r) for r in roots if r and Path(r).is_relative_to(under)]
