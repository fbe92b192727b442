"""The planning step of a prepare: from a fetched ResourceClaim to the list of devices to
prepare, and the checkpoint entry that records the plan.

:func:`plan_claim` is pure (no I/O, no hooks): allocation results of this driver → their device
in the inventory, owning backend and resolved opaque configs, or a :class:`ClaimError` naming the
claim and field. :func:`apply_validation` runs the backends' ``dra_validate_config`` and returns
a new plan without the configs a backend declined.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from ..composition import BackendInstance, DriverInventory
from ..errors import HookError
from ..model import AllocatedDevice, ClaimInfo, Device, OpaqueConfig
from ..slices.convert import model_pool_name
from .configs import ConfigEntry, ConfigError, ConfigTypes, decode_strict, driver_configs, resolve
from .entry import PREPARE_STARTED, ClaimEntry, DeviceRecord, PartitionEntry, PreparedRecord
from .interfaces import ClaimError

DeviceKey = tuple["str | None", str]


@dataclass(frozen=True)
class PlannedDevice:
    """One allocation result of this driver, resolved: the raw ``result``, the
    :class:`AllocatedDevice` the backend gets, the owning ``backend`` key, whether the device is
    held ``exclusive``-ly, and the resolved ``configs`` (entry, decoded) in precedence order."""

    result: Mapping[str, Any]
    allocated: AllocatedDevice
    backend: str
    exclusive: bool
    configs: tuple[tuple[ConfigEntry, OpaqueConfig], ...] = ()

    @property
    def key(self) -> tuple[str, str]:
        return (self.allocated.pool, self.allocated.name)


class DeviceIndex:
    """(pool key, device name) → Device of an inventory, rebuilt when the inventory changes."""

    def __init__(self) -> None:
        self._cached: tuple[DriverInventory, int, dict[DeviceKey, Device]] | None = None

    def of(self, inv: DriverInventory) -> dict[DeviceKey, Device]:
        cached = self._cached
        if cached is not None and cached[0] is inv and cached[1] == sum(len(p.devices) for p in inv.pools.values()):
            return cached[2]
        index = {(key, d.name): d for key, p in inv.pools.items() for d in p.devices}
        self._cached = (inv, len(index), index)
        return index


def plan_claim(claim: Mapping[str, Any], *, driver: str, node_name: str, inventory: DriverInventory,
               index: Mapping[DeviceKey, Device], backends: Sequence[str], config_types: ConfigTypes,
               label: str) -> list[PlannedDevice]:
    """The devices of ``driver`` in the allocated ResourceClaim ``claim`` (a resource.k8s.io/v1
    dict with ``status.allocation``), in allocation order; ``[]`` when none. Raises
    :class:`ClaimError` ``unknown_device`` (not published here, or its backend is not among
    ``backends``) or ``config`` (an opaque config does not decode or resolve)."""
    alloc = claim["status"]["allocation"]
    results = [r for r in ((alloc.get("devices") or {}).get("results") or []) if r.get("driver") == driver]
    if not results:
        return []
    entries = driver_configs(alloc, driver)
    try:
        decoded = {e.index: decode_strict(e, config_types, label) for e in entries}
    except ConfigError as exc:
        raise ClaimError("config", str(exc)) from None
    plan: list[PlannedDevice] = []
    for r in results:
        pool, name, request = str(r.get("pool", "")), str(r.get("device", "")), str(r.get("request", ""))
        # Published pool names map back to the backend's (None = node pool, "<node>/<name>"
        # for named node-local pools; see slices.convert.published_pool_name).
        pool_key: str | None = pool
        device = index.get((pool, name))
        if device is None:
            pool_key = model_pool_name(pool, node_name)
            device = index.get((pool_key, name))
        backend_key = inventory.owner.get((pool_key, name)) if device is not None else None
        if device is None or backend_key is None:
            raise ClaimError("unknown_device", f"claim {label}: device {name!r} in pool {pool!r} is not published "
                                               f"by driver {driver} on this node (removed, or never here)")
        if backend_key not in backends:
            raise ClaimError("unknown_device", f"claim {label}: device {name!r} belongs to backend "
                                               f"{backend_key!r}, which is not configured")
        base, _, sub = request.partition("/")
        try:
            cfgs = resolve(entries, decoded, request, backend_key, config_types, label, name)
        except ConfigError as exc:
            raise ClaimError("config", str(exc)) from None
        admin = bool(r.get("adminAccess"))
        allocated = AllocatedDevice(
            request=base, pool=pool, device=device, subrequest=request if sub else None,
            admin_access=admin, share_id=r.get("shareID") or None,
            consumed_capacity=dict(r.get("consumedCapacity") or {}), configs=tuple(c for _, c in cfgs))
        # A share (the allocator sets shareID for every allocation of an allowMultipleAllocations
        # device) is checked by engine/shares.py; a result without one holds the device alone,
        # even when the device says it may be shared (a server without DRAConsumableCapacity
        # drops that field and allocates it exclusively).
        plan.append(PlannedDevice(r, allocated, backend_key, not admin and allocated.share_id is None, tuple(cfgs)))
    return plan


async def apply_validation(plan: Sequence[PlannedDevice], by_key: Mapping[str, BackendInstance],
                           label: str) -> list[PlannedDevice]:
    """``dra_validate_config`` of each device's backend on each of its configs; returns the plan
    without the claim- or class-wide configs a backend declined (False). Raises ClaimError
    ``config`` for a config the backend refuses (ValueError) or declines although it names the
    device's request, ``backend`` for a wrong hook result."""
    out: list[PlannedDevice] = []
    for p in plan:
        hooks = by_key[p.backend].hooks
        if not p.configs or not hooks.implements("dra_validate_config"):
            out.append(p)
            continue
        kept = []
        for entry, cfg in p.configs:
            try:
                applies = await hooks.validate_config(cfg, p.allocated)
            except HookError as exc:
                raise ClaimError("backend", f"claim {label}: {exc}") from None
            except ValueError as exc:
                raise ClaimError("config", f"claim {label}: device {p.allocated.name}: {entry.label}: {exc}") from None
            if applies is False:
                # A claim- or class-wide config of another device type is skipped; one that
                # names this device's request was meant for it, so it is an error.
                if entry.requests:
                    raise ClaimError("config", f"claim {label}: device {p.allocated.name}: {entry.label}: "
                                               f"cannot be applied to this device")
                continue
            kept.append((entry, cfg))
        if len(kept) != len(p.configs):
            p = dataclasses.replace(p, configs=tuple(kept),
                                    allocated=dataclasses.replace(p.allocated, configs=tuple(c for _, c in kept)))
        out.append(p)
    return out


def started_entry(info: ClaimInfo, plan: Sequence[PlannedDevice], *, backends: Sequence[str],
                  partitioning: set[str], boot_id: str, now: float) -> ClaimEntry:
    """The ``PrepareStarted`` entry of a plan: ``backends`` in prepare order (those of the
    driver the plan uses), every planned device, and a *pending* partition entry per device of
    each backend in ``partitioning`` (those that create partitions; never for admin access), so
    a crash inside ``dra_create_partition`` still leaves a record to destroy."""
    order = [k for k in backends if any(p.backend == k for p in plan)]
    devices = tuple(DeviceRecord(backend=p.backend, request=p.allocated.subrequest or p.allocated.request,
                                 pool=p.allocated.pool, device=p.allocated.name, share_id=p.allocated.share_id,
                                 admin_access=p.allocated.admin_access, exclusive=p.exclusive,
                                 configs=tuple(dict(e.parameters) for e, _ in p.configs),
                                 consumed_capacity=dict(p.allocated.consumed_capacity)) for p in plan)
    pending = tuple(PartitionEntry.pending_for(k, name) for k in order if k in partitioning
                    for name in dict.fromkeys(p.allocated.name for p in plan
                                              if p.backend == k and not p.allocated.admin_access))
    return ClaimEntry(uid=info.uid, namespace=info.namespace, name=info.name, state=PREPARE_STARTED,
                      boot_id=boot_id, started_at=now, backends=tuple(order), devices=devices, partitions=pending)


def prepared_records(plan: Sequence[PlannedDevice],
                     id_of: Mapping[tuple[str, str | None], str]) -> tuple[PreparedRecord, ...]:
    """One record per (pool, device, share id) of the plan with the requests it serves and its
    CDI device ID (``id_of[(device, share id)]``)."""
    groups: dict[tuple[str, str, str | None], tuple[list[str], str]] = {}
    for p in plan:
        a = p.allocated
        k = (a.pool, a.name, a.share_id)
        if k not in groups:
            groups[k] = ([], id_of[(a.name, a.share_id)])
        if a.request not in groups[k][0]:
            groups[k][0].append(a.request)
    return tuple(PreparedRecord(pool=pool, device=device, requests=tuple(reqs), cdi_device_ids=(cdi_id,),
                                share_id=share) for (pool, device, share), (reqs, cdi_id) in groups.items())


__all__ = ["DeviceIndex", "PlannedDevice", "apply_validation", "plan_claim", "prepared_records", "started_entry"]
