"""Admin-supplied device attributes (``drivers[].backends[].deviceAttributes``), merged into what a
backend discovers, with discovered facts always winning.

Rule (docs/config.md#admin-supplied-device-attributes, dra-driver-sriov#108): an admin may *add*
attributes such as ``rack`` to
devices chosen by name pattern, but may never override hardware facts. A key is skipped with a
warning when

- the device already has it from discovery, or
- the backend discovers it on any of its devices (a backend-owned key, e.g. ``pciAddress`` on a
  device that happens to lack it), or
- it is in :data:`RESERVED_DOMAINS` / :data:`RESERVED_ATTRIBUTES`, the one framework-wide list.

Names without a domain belong to the driver's domain, so ``rack`` and ``<driver>/rack`` are the
same key (resource.k8s.io/v1 QualifiedName).
"""
from __future__ import annotations

import dataclasses
import fnmatch
import logging
from typing import Any, Iterable, Mapping

from .model import Inventory, Version

log = logging.getLogger(__name__)

#: Domains whose attributes only the framework and backends set (standard attributes such as
#: resource.kubernetes.io/pciBusID, pcieRoot, numaNode).
RESERVED_DOMAINS = ("resource.kubernetes.io",)
#: Unqualified keys that stand for device identity in every backend.
RESERVED_ATTRIBUTES = frozenset({"type", "uuid", "name"})


def _canonical(key: str, driver: str) -> str:
    """``rack`` and ``<driver>/rack`` are one key."""
    return key if "/" in key else f"{driver}/{key}"


def _value(v: Any) -> Any:
    if isinstance(v, Mapping) and set(v) == {"version"}:
        return Version(str(v["version"]))
    return v


def apply_admin_attributes(driver: str, backend: str, inventory: Inventory,
                           rules: Iterable[Any]) -> list[str]:
    """Merge each rule's ``attributes`` into the matching devices of ``inventory`` in place.

    ``rules`` items have ``devices`` (fnmatch patterns on device names), ``pool`` (None = any)
    and ``attributes`` (key → int | bool | str | {"version": str}). Returns the warnings (also
    logged), one per skipped key and rule."""
    rules = list(rules)
    if not rules:
        return []
    owned = {_canonical(k, driver) for p in inventory.pools for d in p.devices for k in d.attributes}
    warnings: list[str] = []
    for i, rule in enumerate(rules):
        skipped: dict[str, str] = {}
        for pool in inventory.pools:
            if rule.pool is not None and rule.pool != pool.name:
                continue
            for n, dev in enumerate(pool.devices):
                if not any(fnmatch.fnmatchcase(dev.name, pat) for pat in rule.devices):
                    continue
                have = {_canonical(k, driver) for k in dev.attributes}
                extra: dict[str, Any] = {}
                for key, value in rule.attributes.items():
                    ck = _canonical(key, driver)
                    domain = ck.split("/", 1)[0]
                    if ck in have or ck in owned:
                        skipped[key] = "discovered by the backend; discovered attributes win"
                    elif domain in RESERVED_DOMAINS or (domain == driver and ck.split("/", 1)[1] in RESERVED_ATTRIBUTES):
                        skipped[key] = "reserved for the framework and backends"
                    else:
                        extra[key] = _value(value)
                if extra:
                    pool.devices[n] = dataclasses.replace(dev, attributes={**dev.attributes, **extra})
        for key, why in skipped.items():
            msg = (f"driver {driver} backend {backend}: deviceAttributes[{i}]: attribute {key!r} "
                   f"skipped: {why}")
            log.warning(msg)
            warnings.append(msg)
    return warnings
