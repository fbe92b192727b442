"""Container edits returned by backends: a typed model of CDI ``containerEdits``.

Field set and JSON names follow CDI spec 1.1.0 (``specs-go/config.go``; docs/cdi-rules.md#fields).
Python attribute names are snake_case, the CDI JSON names are pydantic aliases; both are
accepted on input (``populate_by_name``). Models are frozen (immutable, hashable) and
reject unknown fields. List-valued fields are stored as tuples.

Serialize with :meth:`ContainerEdits.to_cdi` (never emits ``null`` or empty optionals,
docs/cdi-rules.md#framework-policy); parse with :meth:`ContainerEdits.from_cdi`. Compose with :func:`merge`.

The models enforce the per-field rules that can be checked in isolation (env syntax,
device-node ``type``/``permissions``, hook names, uint32 ranges, ...); whole-spec rules
(absolute paths, duplicates, versions) live in :mod:`dra_framework.cdi.validate`.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .errors import CdiConflictError

UINT32_MAX = 2**32 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

#: Hook names accepted by the CDI Go library (``pkg/cdi/container-edits.go``; docs/cdi-rules.md#fields).
HOOK_NAMES = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")
#: Device node types (docs/cdi-rules.md#fields; ``""`` means "ask the host").
DEVICE_NODE_TYPES = ("b", "c", "u", "p")

HookName = Literal["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"]

def check_env_entry(entry: str) -> str:
    """Check one CDI env entry ``"NAME=VALUE"`` (docs/cdi-rules.md#fields: ``=`` must exist at index > 0).

    Returns the entry; raises ``ValueError`` otherwise.
    """
    if not isinstance(entry, str):
        raise ValueError(f"env entry must be a string, got {type(entry).__name__}")
    if entry.find("=") <= 0:
        raise ValueError(f"invalid env entry {entry!r}: must be NAME=VALUE with a non-empty NAME")
    return entry


def _check_env_name(name: str) -> str:
    if not name or "=" in name:
        raise ValueError(f"invalid env variable name {name!r}: must be non-empty and contain no '='")
    return name


class _Model(BaseModel):
    # written out here (not through a variable) so that the pydantic mypy plugin sees
    # populate_by_name and accepts the snake_case field names in __init__
    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="forbid", validate_default=False)

    def to_cdi(self) -> dict[str, Any]:
        """This object as CDI JSON (camelCase keys, no ``null``s, empty optionals omitted)."""
        out: dict[str, Any] = {}
        for name, info in type(self).model_fields.items():
            value = getattr(self, name)
            if value is None or (isinstance(value, (tuple, list, dict)) and not value and name not in self._keep_empty()):
                continue
            if isinstance(value, _Model):
                value = value.to_cdi()
            elif isinstance(value, tuple):
                value = [v.to_cdi() if isinstance(v, _Model) else v for v in value]
            out[info.alias or name] = value
        return out

    @classmethod
    def _keep_empty(cls) -> tuple[str, ...]:
        return ()

    @classmethod
    def from_cdi(cls, data: Mapping[str, Any]) -> Self:
        """Parse CDI JSON (camelCase keys); raises ``pydantic.ValidationError``."""
        return cls.model_validate(data)


class DeviceNode(_Model):
    """CDI ``DeviceNode`` (docs/cdi-rules.md#fields; ``specs-go/config.go``).

    ``path``: absolute path inside the container (required). ``host_path`` (``hostPath``,
    spec >= 0.5.0): path on the host, defaults to ``path``. ``type``: ``b``/``c``/``u``/``p``
    or unset (the runtime ``lstat``s the host node at container creation, docs/cdi-rules.md#injection — set
    type+major+minor when the node may not exist then). ``major``/``minor``: int64.
    ``file_mode`` (``fileMode``): Go ``os.FileMode`` as a decimal integer (e.g. ``0o666``).
    ``permissions``: cgroup access, only letters ``r``/``w``/``m`` (``"none"`` is rejected:
    only libraries newer than v1.1.0 accept it, docs/cdi-rules.md#versions). ``uid``/``gid``: uint32 owner in
    the container.
    """

    path: str
    host_path: str | None = Field(default=None, alias="hostPath")
    type: Literal["b", "c", "u", "p"] | None = None
    major: int | None = Field(default=None, ge=INT64_MIN, le=INT64_MAX)
    minor: int | None = Field(default=None, ge=INT64_MIN, le=INT64_MAX)
    file_mode: int | None = Field(default=None, alias="fileMode", ge=0, le=UINT32_MAX)
    permissions: str | None = None
    uid: int | None = Field(default=None, ge=0, le=UINT32_MAX)
    gid: int | None = Field(default=None, ge=0, le=UINT32_MAX)

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        if not v:
            raise ValueError("device node path must not be empty")
        return v

    @field_validator("permissions")
    @classmethod
    def _perms(cls, v: str | None) -> str | None:
        if v is not None and set(v) - set("rwm"):
            raise ValueError(f"invalid device node permissions {v!r}: only the letters r, w, m are allowed")
        return v


class Mount(_Model):
    """CDI ``Mount`` (docs/cdi-rules.md#fields). ``host_path`` (``hostPath``, required): source on the host
    (for bind mounts an absolute path); ``container_path`` (``containerPath``, required): absolute
    destination; ``type`` (spec >= 0.4.0, e.g. ``"bind"``/``"tmpfs"``); ``options`` (e.g.
    ``("ro", "nosuid", "bind")``)."""

    host_path: str = Field(alias="hostPath")
    container_path: str = Field(alias="containerPath")
    type: str | None = None
    options: tuple[str, ...] = ()

    @field_validator("host_path", "container_path")
    @classmethod
    def _nonempty(cls, v: str) -> str:
        if not v:
            raise ValueError("mount paths must not be empty")
        return v


class Hook(_Model):
    """CDI ``Hook`` (docs/cdi-rules.md#fields). ``hook_name`` (``hookName``): one of :data:`HOOK_NAMES`;
    ``path``: absolute path of the executable on the host (SPEC: MUST be absolute); ``args``
    (argv including argv[0]); ``env``: ``"NAME=VALUE"`` entries; ``timeout``: seconds, > 0
    (SPEC) and <= uint32 max."""

    hook_name: HookName = Field(alias="hookName")
    path: str
    args: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    timeout: int | None = Field(default=None, gt=0, le=UINT32_MAX)

    @field_validator("env")
    @classmethod
    def _env(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for e in v:
            check_env_entry(e)
        return v

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        if not v:
            raise ValueError("hook path must not be empty")
        return v


class NetDevice(_Model):
    """CDI ``LinuxNetDevice`` (``netDevices`` entry, spec >= 1.1.0; docs/cdi-rules.md#fields).
    ``host_interface_name`` (``hostInterfaceName``): interface on the host; ``name``: its name
    inside the container. Both non-empty."""

    host_interface_name: str = Field(alias="hostInterfaceName", min_length=1)
    name: str = Field(min_length=1)


class IntelRdt(_Model):
    """CDI ``IntelRdt`` (``intelRdt`` edits, spec >= 0.7.0; ``schemata`` and
    ``enable_monitoring`` need 1.1.0 — an explicit empty ``schemata`` counts, docs/cdi-rules.md#versions).
    ``clos_id`` (``closID``) must not be ``.``/``..``, contain ``/`` or a newline, or be
    >= 4096 chars (except exactly ``/``)."""

    clos_id: str | None = Field(default=None, alias="closID")
    l3_cache_schema: str | None = Field(default=None, alias="l3CacheSchema")
    mem_bw_schema: str | None = Field(default=None, alias="memBwSchema")
    schemata: tuple[str, ...] | None = None
    enable_monitoring: bool | None = Field(default=None, alias="enableMonitoring")

    @classmethod
    def _keep_empty(cls) -> tuple[str, ...]:
        return ("schemata",)

    @field_validator("clos_id")
    @classmethod
    def _clos(cls, v: str | None) -> str | None:
        if v is not None and v != "/" and (v in (".", "..") or "/" in v or "\n" in v or len(v) >= 4096):
            raise ValueError(f"invalid closID {v!r}")
        return v


class ContainerEdits(_Model):
    """CDI ``containerEdits`` (docs/cdi-rules.md#fields): what injecting a device does to a container.

    ``env``: ordered mapping NAME -> VALUE (a list of ``"NAME=VALUE"`` strings is accepted and
    converted; for a repeated name the last value wins, as at injection) — serialized as CDI
    ``env: ["NAME=VALUE", ...]``. ``device_nodes`` (``deviceNodes``), ``mounts``, ``hooks``,
    ``additional_gids`` (``additionalGids``, uint32, spec >= 0.7.0), ``net_devices``
    (``netDevices``, spec >= 1.1.0), ``intel_rdt`` (``intelRdt``, spec >= 0.7.0).
    """

    env: dict[str, str] = Field(default_factory=dict)
    device_nodes: tuple[DeviceNode, ...] = Field(default=(), alias="deviceNodes")
    mounts: tuple[Mount, ...] = ()
    hooks: tuple[Hook, ...] = ()
    additional_gids: tuple[int, ...] = Field(default=(), alias="additionalGids")
    net_devices: tuple[NetDevice, ...] = Field(default=(), alias="netDevices")
    intel_rdt: IntelRdt | None = Field(default=None, alias="intelRdt")

    @field_validator("env", mode="before")
    @classmethod
    def _env_in(cls, v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            out: dict[str, str] = {}
            for e in v:
                name, _, value = check_env_entry(e).partition("=")
                out.pop(name, None)
                out[name] = value
            return out
        return v

    @field_validator("env")
    @classmethod
    def _env_names(cls, v: dict[str, str]) -> dict[str, str]:
        for k in v:
            _check_env_name(k)
        return v

    @field_validator("additional_gids")
    @classmethod
    def _gids(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        for g in v:
            if not 0 <= g <= UINT32_MAX:
                raise ValueError(f"additional GID {g} out of uint32 range")
        return v

    def __hash__(self) -> int:  # env is a dict; == ignores its order, so the hash must too
        return hash((frozenset(self.env.items()), self.device_nodes, self.mounts, self.hooks,
                     self.additional_gids, self.net_devices, self.intel_rdt))

    def is_empty(self) -> bool:
        """True when the edits change nothing (a CDI device must have non-empty edits, docs/cdi-rules.md#fields)."""
        return not (self.env or self.device_nodes or self.mounts or self.hooks or self.additional_gids
                    or self.net_devices or self.intel_rdt is not None)

    def to_cdi(self) -> dict[str, Any]:
        out = super().to_cdi()
        if self.env:
            out["env"] = [f"{k}={v}" for k, v in self.env.items()]
        return out


# ---------------------------------------------------------------------------------------------
# merge


def merge(edits: Iterable[ContainerEdits | tuple[str, ContainerEdits]]) -> ContainerEdits:
    """Compose several container edits into one.

    ``edits``: :class:`ContainerEdits`, or ``(source_label, ContainerEdits)`` pairs (the label
    appears in conflict errors; default ``"edits[i]"``).

    Order is deterministic: entries keep the order of first appearance (input order, then the
    order inside each edits object). Identical entries are kept once. Rules per field:

    * ``env``: same name with different values -> conflict.
    * ``deviceNodes``: two nodes at the same container ``path`` that differ in any field -> conflict.
    * ``mounts``: two mounts at the same ``containerPath`` that differ (host path, type, options)
      -> conflict (a runtime would silently keep only one, docs/cdi-rules.md#injection).
    * ``hooks``: de-duplicated, never conflict.
    * ``additionalGids``: union in order of appearance.
    * ``netDevices``: same container ``name`` or same ``hostInterfaceName`` with a different
      partner -> conflict (the Go library rejects duplicates within one edits object, docs/cdi-rules.md#load-rules).
    * ``intelRdt``: two different non-null values -> conflict.

    Returns a new :class:`ContainerEdits`. Raises :class:`CdiConflictError` (a ``ValueError``)
    naming both sources.
    """
    env: dict[str, str] = {}
    env_src: dict[str, str] = {}
    nodes: dict[str, tuple[DeviceNode, str]] = {}
    mounts: dict[str, tuple[Mount, str]] = {}
    hooks: dict[Hook, None] = {}
    gids: dict[int, None] = {}
    nets: dict[str, tuple[NetDevice, str]] = {}
    net_hosts: dict[str, tuple[NetDevice, str]] = {}
    rdt: tuple[IntelRdt, str] | None = None

    for i, item in enumerate(edits):
        src, e = item if isinstance(item, tuple) else (f"edits[{i}]", item)
        if not isinstance(e, ContainerEdits):
            raise TypeError(f"{src}: expected ContainerEdits, got {type(e).__name__}")
        for k, v in e.env.items():
            if k in env and env[k] != v:
                raise CdiConflictError("env", k, env_src[k], env[k], src, v)
            env.setdefault(k, v)
            env_src.setdefault(k, src)
        for n in e.device_nodes:
            if n.path in nodes and nodes[n.path][0] != n:
                raise CdiConflictError("deviceNodes", n.path, nodes[n.path][1], nodes[n.path][0].to_cdi(),
                                       src, n.to_cdi())
            nodes.setdefault(n.path, (n, src))
        for m in e.mounts:
            if m.container_path in mounts and mounts[m.container_path][0] != m:
                old, osrc = mounts[m.container_path]
                raise CdiConflictError("mounts", m.container_path, osrc, old.to_cdi(), src, m.to_cdi())
            mounts.setdefault(m.container_path, (m, src))
        for h in e.hooks:
            hooks.setdefault(h, None)
        for g in e.additional_gids:
            gids.setdefault(g, None)
        for nd in e.net_devices:
            for table, key in ((nets, nd.name), (net_hosts, nd.host_interface_name)):
                if key in table and table[key][0] != nd:
                    raise CdiConflictError("netDevices", key, table[key][1], table[key][0].to_cdi(), src, nd.to_cdi())
            nets.setdefault(nd.name, (nd, src))
            net_hosts.setdefault(nd.host_interface_name, (nd, src))
        if e.intel_rdt is not None:
            if rdt is not None and rdt[0] != e.intel_rdt:
                raise CdiConflictError("intelRdt", "intelRdt", rdt[1], rdt[0].to_cdi(), src, e.intel_rdt.to_cdi())
            rdt = rdt or (e.intel_rdt, src)

    return ContainerEdits(
        env=env,
        device_nodes=tuple(n for n, _ in nodes.values()),
        mounts=tuple(m for m, _ in mounts.values()),
        hooks=tuple(hooks),
        additional_gids=tuple(gids),
        net_devices=tuple(n for n, _ in nets.values()),
        intel_rdt=rdt[0] if rdt else None,
    )
