"""The typed checkpoint entry of one claim, and the schema versions of the checkpoint payload.

One :class:`ClaimEntry` per claim UID is stored in the checkpoint (see
:mod:`dra_framework.engine.checkpoint` for the file format). Its JSON form (schema version
:data:`SCHEMA_VERSION`)::

    {"uid", "namespace", "name", "state": "PrepareStarted" | "PrepareCompleted" | "Recovered",
     "bootId", "startedAt"?: unix s, "backends": [backend key, in prepare order],
     "devices": [{"backend", "request", "pool", "device", "shareId", "adminAccess", "exclusive",
                  "configs": [stored opaque parameters]}],
     "journal": {backend: {key: value}},
     "partitions": [{"backend", "device", "record"} | {"backend", "device", "state": "pending",
                    "journal", "recovered"?}],
     "completedAt"?, "teardown"?: {backend: {...}}, "cdi"?: {"devices": [{"device", "shareId",
     "edits"}], "claimEdits"}, "prepared"?: [{"requests", "pool", "device", "cdiDeviceIds",
     "shareId"}], "statusWritten"?: true, "unprepareStarted"?: unix s}

Reading never fails on content: a field of the wrong type reads as its default, and keys this
version does not know are kept (``extra``) and written back unchanged, so an entry written by a
newer release of the same schema version survives a rewrite by an older one.

Schema versions: the payload of version N is upgraded to N+1 by ``MIGRATIONS[N]`` when read
(:func:`upgrade`). To change the stored shape incompatibly: raise :data:`SCHEMA_VERSION`, add the
step for the previous version, keep a test that reads a stored file of every earlier version
(tests/engine/test_checkpoint_entry.py). Never change how version N is read.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable, Iterable

SCHEMA_VERSION = 1

#: Claim entry states (two-phase prepare).
PREPARE_STARTED = "PrepareStarted"
PREPARE_COMPLETED = "PrepareCompleted"
#: A claim whose CDI spec survived a lost checkpoint (see the engine's start-up reconcile).
RECOVERED = "Recovered"
#: State of a partition entry written before ``dra_create_partition`` returned.
PARTITION_PENDING = "pending"

#: Payload upgrade steps: version N → version N+1 (none yet: version 1 is the first).
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}

JsonDict = dict[str, Any]


class SchemaVersionError(ValueError):
    """No upgrade path from a stored schema version to the current one."""


def upgrade(version: int, payload: JsonDict, *, target: int = SCHEMA_VERSION,
            steps: Mapping[int, Callable[[JsonDict], JsonDict]] = MIGRATIONS) -> JsonDict:
    """The payload (``{"bootId", "claims"}``) of schema ``version`` upgraded to ``target`` by
    applying ``steps[version]``, ``steps[version + 1]``, ... Raises :class:`SchemaVersionError`
    when ``version`` is newer than ``target`` or a step is missing."""
    if version > target:
        raise SchemaVersionError(f"schema version {version} is newer than this driver's {target}")
    while version < target:
        step = steps.get(version)
        if step is None:
            raise SchemaVersionError(f"no upgrade from schema version {version} to {version + 1}")
        payload = step(payload)
        version += 1
    return payload


# --- lenient readers (a bad field reads as its default, never raises) ---------------------------


def _str(v: Any, default: str = "") -> str:
    return v if isinstance(v, str) else default


def _opt_str(v: Any) -> str | None:
    return v if isinstance(v, str) and v else None


def _opt_float(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _dict(v: Any) -> JsonDict:
    return dict(v) if isinstance(v, Mapping) else {}


def _dicts(v: Any) -> list[Mapping[str, Any]]:
    return [x for x in v if isinstance(x, Mapping)] if isinstance(v, list) else []


def _strs(v: Any) -> tuple[str, ...]:
    return tuple(x for x in v if isinstance(x, str)) if isinstance(v, list) else ()


def _nested(v: Any) -> dict[str, JsonDict]:
    return {str(k): dict(x) for k, x in v.items() if isinstance(x, Mapping)} if isinstance(v, Mapping) else {}


def _extra(raw: Mapping[str, Any], known: Iterable[str]) -> JsonDict:
    k = set(known)
    return {key: v for key, v in raw.items() if key not in k}


# --- records ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceRecord:
    """One allocation result of the driver, as planned (``devices`` list)."""

    backend: str
    request: str
    pool: str
    device: str
    share_id: str | None = None
    admin_access: bool = False
    exclusive: bool = True
    configs: tuple[JsonDict, ...] = ()
    #: consumable capacity this share took (capacity name → quantity string), for the share check
    consumed_capacity: JsonDict = field(default_factory=dict)
    extra: JsonDict = field(default_factory=dict)

    _KEYS = ("backend", "request", "pool", "device", "shareId", "adminAccess", "exclusive", "configs",
             "consumedCapacity")

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> DeviceRecord:
        return cls(backend=_str(raw.get("backend")), request=_str(raw.get("request")), pool=_str(raw.get("pool")),
                   device=_str(raw.get("device")), share_id=_opt_str(raw.get("shareId")),
                   admin_access=raw.get("adminAccess") is True, exclusive=raw.get("exclusive", True) is not False,
                   configs=tuple(dict(c) for c in _dicts(raw.get("configs"))),
                   consumed_capacity={str(k): str(v) for k, v in (raw.get("consumedCapacity") or {}).items()}
                   if isinstance(raw.get("consumedCapacity"), Mapping) else {},
                   extra=_extra(raw, cls._KEYS))

    def to_json(self) -> JsonDict:
        out = {**self.extra, "backend": self.backend, "request": self.request, "pool": self.pool,
               "device": self.device, "shareId": self.share_id, "adminAccess": self.admin_access,
               "exclusive": self.exclusive, "configs": [dict(c) for c in self.configs]}
        if self.consumed_capacity:  # only shares carry it: entries of exclusive devices stay as they were
            out["consumedCapacity"] = dict(self.consumed_capacity)
        return out


@dataclass(frozen=True)
class PartitionEntry:
    """A partition the claim owns: the ``record`` ``dra_create_partition`` returned, or a
    *pending* entry written before it returned (``journal``: what ``ctx.record`` stored during the
    create; ``recovered``: rebuilt from a CDI spec after the checkpoint was lost)."""

    backend: str
    device: str
    record: JsonDict | None = None
    pending: bool = False
    journal: JsonDict = field(default_factory=dict)
    recovered: bool = False
    extra: JsonDict = field(default_factory=dict)

    _KEYS = ("backend", "device", "record", "state", "journal", "recovered")

    @classmethod
    def pending_for(cls, backend: str, device: str, *, recovered: bool = False) -> PartitionEntry:
        return cls(backend=backend, device=device, pending=True, recovered=recovered)

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> PartitionEntry:
        record = raw.get("record")
        return cls(backend=_str(raw.get("backend")), device=_str(raw.get("device")),
                   record=dict(record) if isinstance(record, Mapping) else None,
                   pending=raw.get("state") == PARTITION_PENDING, journal=_dict(raw.get("journal")),
                   recovered=raw.get("recovered") is True, extra=_extra(raw, cls._KEYS))

    def to_json(self) -> JsonDict:
        out: JsonDict = {**self.extra, "backend": self.backend, "device": self.device}
        if self.record is not None:
            out["record"] = dict(self.record)
        if self.pending:
            out["state"] = PARTITION_PENDING
        if self.pending or self.journal:
            out["journal"] = dict(self.journal)
        if self.recovered:
            out["recovered"] = True
        return out

    def is_pending_for(self, backend: str, device: str) -> bool:
        return self.pending and self.backend == backend and self.device == device

    def same_partition(self, other: PartitionEntry) -> bool:
        return self.backend == other.backend and self.device == other.device

    def hook_record(self) -> JsonDict:
        """What ``dra_destroy_partition`` and ``dra_reconcile_partitions`` get: the record
        ``dra_create_partition`` returned, or for a pending entry (the hook had not returned:
        crash, error, or the device is no partition) ``{"device": name, "pending": True,
        "journal": {...}}``, plus ``"recovered": True`` when rebuilt from a CDI spec. See
        docs/backends.md "Crash safety of partitions"."""
        if not self.pending and self.record is not None:
            return dict(self.record)
        out: JsonDict = {"device": self.device, "pending": True, "journal": dict(self.journal)}
        if self.recovered:
            out["recovered"] = True
        return out


@dataclass(frozen=True)
class PreparedRecord:
    """One prepared device as returned to the kubelet (``prepared`` list)."""

    pool: str
    device: str
    requests: tuple[str, ...] = ()
    cdi_device_ids: tuple[str, ...] = ()
    share_id: str | None = None
    extra: JsonDict = field(default_factory=dict)

    _KEYS = ("requests", "pool", "device", "cdiDeviceIds", "shareId")

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> PreparedRecord:
        return cls(pool=_str(raw.get("pool")), device=_str(raw.get("device")), requests=_strs(raw.get("requests")),
                   cdi_device_ids=_strs(raw.get("cdiDeviceIds")), share_id=_opt_str(raw.get("shareId")),
                   extra=_extra(raw, cls._KEYS))

    def to_json(self) -> JsonDict:
        return {**self.extra, "requests": list(self.requests), "pool": self.pool, "device": self.device,
                "cdiDeviceIds": list(self.cdi_device_ids), "shareId": self.share_id}


@dataclass(frozen=True)
class CdiDeviceRecord:
    """One device of the claim's CDI spec: ``edits`` in CDI JSON form."""

    device: str
    share_id: str | None
    edits: JsonDict

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> CdiDeviceRecord:
        return cls(_str(raw.get("device")), _opt_str(raw.get("shareId")), _dict(raw.get("edits")))

    def to_json(self) -> JsonDict:
        return {"device": self.device, "shareId": self.share_id, "edits": dict(self.edits)}


# --- the entry ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClaimEntry(Mapping[str, Any]):
    """One claim's checkpoint entry. Immutable: changes go through :func:`dataclasses.replace`
    (``entry.replace(...)``). Also a read-only mapping of its JSON form (for inspection)."""

    uid: str
    namespace: str = ""
    name: str = ""
    state: str = ""
    boot_id: str = ""
    started_at: float | None = None
    backends: tuple[str, ...] = ()
    devices: tuple[DeviceRecord, ...] = ()
    journal: dict[str, JsonDict] = field(default_factory=dict)
    partitions: tuple[PartitionEntry, ...] = ()
    completed_at: float | None = None
    teardown: dict[str, JsonDict] | None = None
    cdi_devices: tuple[CdiDeviceRecord, ...] | None = None
    cdi_claim_edits: JsonDict | None = None
    prepared: tuple[PreparedRecord, ...] | None = None
    status_written: bool = False
    unprepare_started: float | None = None
    extra: JsonDict = field(default_factory=dict)

    _KEYS = ("uid", "namespace", "name", "state", "bootId", "startedAt", "backends", "devices", "journal",
             "partitions", "completedAt", "teardown", "cdi", "prepared", "statusWritten", "unprepareStarted")

    # --- JSON ---------------------------------------------------------------------------------

    @classmethod
    def from_json(cls, uid: str, raw: Mapping[str, Any]) -> ClaimEntry:
        """The entry stored under ``uid``; never raises for content (see the module docstring)."""
        cdi = raw.get("cdi")
        cdi_map = cdi if isinstance(cdi, Mapping) else None
        prepared = raw.get("prepared")
        return cls(
            uid=uid, namespace=_str(raw.get("namespace")), name=_str(raw.get("name")),
            state=_str(raw.get("state")), boot_id=_str(raw.get("bootId")),
            started_at=_opt_float(raw.get("startedAt")), backends=_strs(raw.get("backends")),
            devices=tuple(DeviceRecord.from_json(d) for d in _dicts(raw.get("devices"))),
            journal=_nested(raw.get("journal")),
            partitions=tuple(PartitionEntry.from_json(p) for p in _dicts(raw.get("partitions"))),
            completed_at=_opt_float(raw.get("completedAt")),
            teardown=_nested(raw.get("teardown")) if "teardown" in raw else None,
            cdi_devices=(tuple(CdiDeviceRecord.from_json(d) for d in _dicts(cdi_map.get("devices")))
                         if cdi_map is not None else None),
            cdi_claim_edits=(dict(cdi_map["claimEdits"]) if cdi_map is not None
                             and isinstance(cdi_map.get("claimEdits"), Mapping) else None),
            prepared=(tuple(PreparedRecord.from_json(p) for p in _dicts(prepared))
                      if isinstance(prepared, list) else None),
            status_written=raw.get("statusWritten") is True,
            unprepare_started=_opt_float(raw.get("unprepareStarted")) if raw.get("unprepareStarted") else None,
            extra=_extra(raw, cls._KEYS))

    def to_json(self) -> JsonDict:
        out: JsonDict = {**self.extra, "uid": self.uid, "namespace": self.namespace, "name": self.name,
                         "state": self.state, "bootId": self.boot_id, "backends": list(self.backends),
                         "devices": [d.to_json() for d in self.devices],
                         "journal": {k: dict(v) for k, v in self.journal.items()},
                         "partitions": [p.to_json() for p in self.partitions]}
        optional: JsonDict = {
            "startedAt": self.started_at, "completedAt": self.completed_at,
            "teardown": {k: dict(v) for k, v in self.teardown.items()} if self.teardown is not None else None,
            "cdi": ({"devices": [d.to_json() for d in self.cdi_devices], "claimEdits": self.cdi_claim_edits}
                    if self.cdi_devices is not None else None),
            "prepared": [p.to_json() for p in self.prepared] if self.prepared is not None else None,
            "statusWritten": True if self.status_written else None,
            "unprepareStarted": self.unprepare_started}
        out.update((k, v) for k, v in optional.items() if v is not None)
        return out

    @cached_property
    def _json(self) -> JsonDict:
        return self.to_json()

    def __getitem__(self, key: str) -> Any:
        return self._json[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._json)

    def __len__(self) -> int:
        return len(self._json)

    # --- meaning --------------------------------------------------------------------------------

    def replace(self, **changes: Any) -> ClaimEntry:
        return dataclasses.replace(self, **changes)

    @property
    def completed(self) -> bool:
        return self.state == PREPARE_COMPLETED

    @property
    def started(self) -> bool:
        return self.state == PREPARE_STARTED

    def from_this_boot(self, boot_id: str) -> bool:
        """False when the entry was written during an earlier boot of the node. Entries without
        a boot id (or when the current ``boot_id`` is unknown) count as from this boot."""
        return not (boot_id and self.boot_id and boot_id != self.boot_id)

    def usable(self, boot_id: str) -> bool:
        """Prepared in this boot and not being unprepared: the stored devices can be handed out."""
        return self.completed and self.from_this_boot(boot_id) and self.unprepare_started is None

    def unfinished(self) -> bool:
        """An interrupted prepare or a teardown that did not finish (the janitor's concern)."""
        return self.started or self.unprepare_started is not None

    def backend_devices(self, backend: str) -> list[str]:
        return list(dict.fromkeys(d.device for d in self.devices if d.backend == backend))


def device_holder(claims: Mapping[str, ClaimEntry], uid: str, wanted: set[tuple[str, str]],
                  boot_id: str) -> tuple[ClaimEntry, DeviceRecord] | None:
    """The first other claim of this boot that holds one of the ``wanted`` (pool, device) pairs
    exclusively (prepared or being prepared), with that device; None when they are all free."""
    if not wanted:
        return None
    for other_uid, other in claims.items():
        if other_uid == uid or not other.from_this_boot(boot_id):
            continue  # prepared before a reboot: holds nothing now
        for d in other.devices:
            if d.exclusive and (d.pool, d.device) in wanted:
                return other, d
    return None


__all__ = [
    "MIGRATIONS", "PARTITION_PENDING", "PREPARE_COMPLETED", "PREPARE_STARTED", "RECOVERED", "SCHEMA_VERSION",
    "CdiDeviceRecord", "ClaimEntry", "DeviceRecord", "PartitionEntry", "PreparedRecord", "SchemaVersionError",
    "device_holder", "upgrade",
]
