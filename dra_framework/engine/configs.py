"""Opaque device configuration: which configs apply to which allocated device, and decoding.

Source of configs: ``ResourceClaim.status.allocation.devices.config[]`` (resource.k8s.io/v1),
where the allocator copied the DeviceClass configs (``source: FromClass``) and the claim's own
configs (``source: FromClaim``). Resolution follows the reference drivers:

* only entries whose ``opaque.driver`` is this driver count; other drivers' configs are ignored;
* class configs come before claim configs, each group in its list order; later entries win, so a
  device's configs are handed to the backend in that precedence order (the last one wins);
* an entry without ``requests`` applies to every request; an entry with ``requests`` applies to a
  device whose request is ``<request>`` or ``<request>/<subrequest>`` when the list names either
  the full ``<request>/<subrequest>`` or the base ``<request>``;
* user input is decoded **strictly** by ``apiVersion``/``kind`` into the backends'
  :class:`~dra_framework.model.OpaqueConfig` types (unknown field, wrong type, unknown
  apiVersion/kind are per-claim errors naming the field:
  ``claim default/c1: config[1] (resource.nvidia.com/v1beta1 GpuConfig): sharing.strategy: ...``,
  where the index is the position in ``status.allocation.devices.config``);
* copies stored in the checkpoint are decoded **leniently** (:func:`decode_stored`): unknown fields
  from a newer release are dropped, never an error
  (docs/failure-modes.md#opaque-configs-from-a-newer-release-in-the-checkpoint).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from pydantic import ValidationError

from ..validation_errors import format_validation_error
from ..errors import ConfigError  # a claim's opaque config: the message names the entry and field
from ..model import OpaqueConfig

FROM_CLASS = "FromClass"
FROM_CLAIM = "FromClaim"


@dataclass(frozen=True)
class ConfigEntry:
    """One ``status.allocation.devices.config[index]`` entry of this driver."""

    index: int
    source: str
    requests: tuple[str, ...]
    parameters: Mapping[str, Any]

    @property
    def api_version(self) -> str:
        return str(self.parameters.get("apiVersion", ""))

    @property
    def kind(self) -> str:
        return str(self.parameters.get("kind", ""))

    @property
    def label(self) -> str:
        """``config[i] (<apiVersion> <kind>)`` for error messages."""
        return f"config[{self.index}] ({self.api_version or '<no apiVersion>'} {self.kind or '<no kind>'})"

    def applies_to(self, request: str) -> bool:
        """Whether this entry applies to a device allocated for ``request`` (``<r>`` or
        ``<r>/<sub>``)."""
        if not self.requests:
            return True
        return request in self.requests or request.split("/", 1)[0] in self.requests


class ConfigTypes:
    """The opaque config types each backend accepts (from ``dra_config_types``), keyed by
    ``(apiVersion, kind)``. ``by_backend``: backend key → types."""

    def __init__(self, by_backend: Mapping[str, Sequence[type[OpaqueConfig]]]) -> None:
        self.by_backend = {k: list(v) for k, v in by_backend.items()}
        self.types: dict[tuple[str, str], type[OpaqueConfig]] = {}
        self.owners: dict[tuple[str, str], set[str]] = {}
        for backend, types in self.by_backend.items():
            for t in types:
                if not (isinstance(t, type) and issubclass(t, OpaqueConfig)):
                    raise TypeError(f"backend {backend!r}: dra_config_types returned {t!r}, not an OpaqueConfig subclass")
                key = (t.api_version, t.kind)
                self.types.setdefault(key, t)
                self.owners.setdefault(key, set()).add(backend)

    def lookup(self, api_version: str, kind: str) -> type[OpaqueConfig] | None:
        return self.types.get((api_version, kind))

    def accepted_by(self, backend: str, api_version: str, kind: str) -> bool:
        return backend in self.owners.get((api_version, kind), ())


def _parameters(raw: Any) -> Mapping[str, Any] | None:
    if isinstance(raw, Mapping):
        return raw
    if isinstance(raw, (str, bytes)):
        try:
            value = json.loads(raw)
        except ValueError:
            return None
        return value if isinstance(value, Mapping) else None
    return None


def driver_configs(allocation: Mapping[str, Any], driver: str) -> list[ConfigEntry]:
    """This driver's entries of ``allocation.devices.config``, class configs first, then claim
    configs (each in list order). Entries of other drivers are skipped. An entry whose
    parameters are not a JSON object is kept with empty parameters (decoding then fails it)."""
    raw = ((allocation.get("devices") or {}).get("config")) or []
    out: list[ConfigEntry] = []
    for i, c in enumerate(raw):
        opaque = (c or {}).get("opaque") or {}
        if opaque.get("driver") != driver:
            continue
        params = _parameters(opaque.get("parameters"))
        out.append(ConfigEntry(i, str(c.get("source") or FROM_CLAIM), tuple(c.get("requests") or ()),
                               params if params is not None else {"<invalid>": True}))
    out.sort(key=lambda e: (0 if e.source == FROM_CLASS else 1, e.index))
    return out


def _body(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if k not in ("apiVersion", "kind")}


def decode_strict(entry: ConfigEntry, types: ConfigTypes, claim: str) -> OpaqueConfig:
    """Decode user-supplied parameters into their OpaqueConfig type. Unknown fields, wrong types
    (JSON-strict: no ``"5"`` for an int) and unknown apiVersion/kind raise :class:`ConfigError`
    ``claim <ns>/<name>: config[i] (<apiVersion> <kind>): <field>: <message>``."""
    where = f"claim {claim}: {entry.label}"
    if "<invalid>" in entry.parameters and len(entry.parameters) == 1:
        raise ConfigError(f"{where}: parameters: must be a JSON object")
    if not entry.api_version or not entry.kind:
        missing = "apiVersion" if not entry.api_version else "kind"
        raise ConfigError(f"{where}: {missing}: required")
    cls = types.lookup(entry.api_version, entry.kind)
    if cls is None:
        known = ", ".join(f"{a} {k}" for a, k in sorted(types.types)) or "none"
        raise ConfigError(f"{where}: unknown apiVersion/kind for this driver (accepted: {known})")
    try:
        return cls.model_validate_json(json.dumps(_body(entry.parameters)), strict=True,
                                       by_alias=True, by_name=False)
    except ValidationError as exc:
        lines = format_validation_error(exc).splitlines()
        raise ConfigError("; ".join(f"{where}: {line}" for line in lines)) from None


def decode_stored(params: Mapping[str, Any], types: ConfigTypes) -> OpaqueConfig | Mapping[str, Any]:
    """Decode a config copy from the checkpoint leniently: unknown fields (written by a newer
    release) are dropped, lax type coercion applies; when the type is unknown or the data still
    does not validate, the raw mapping is returned. Never raises."""
    cls = types.lookup(str(params.get("apiVersion", "")), str(params.get("kind", "")))
    if cls is None:
        return params
    body: Any = json.loads(json.dumps(_body(params)))
    for _ in range(16):
        try:
            return cls.model_validate(body)
        except ValidationError as exc:
            extra = [e["loc"] for e in exc.errors() if e["type"] == "extra_forbidden"]
            if not extra:
                return params
            for loc in extra:
                _drop(body, loc)
    return params


def _drop(obj: Any, loc: Sequence[Any]) -> None:
    for part in loc[:-1]:
        try:
            obj = obj[part]
        except (KeyError, IndexError, TypeError):
            return
    if isinstance(obj, dict):
        obj.pop(loc[-1], None)


def resolve(entries: Sequence[ConfigEntry], decoded: Mapping[int, OpaqueConfig], request: str,
            backend: str, types: ConfigTypes, claim: str, device: str) -> list[tuple[ConfigEntry, OpaqueConfig]]:
    """The configs (entry, decoded) for one device of ``backend`` allocated for ``request``, in
    precedence order. A request-less entry whose type the device's backend does not accept is
    skipped (it is meant for another backend of this driver); a request-scoped one is an error."""
    out = []
    for e in entries:
        if not e.applies_to(request):
            continue
        if not types.accepted_by(backend, e.api_version, e.kind):
            if e.requests:
                raise ConfigError(f"claim {claim}: {e.label}: applies to request {request!r} but device "
                                  f"{device!r} belongs to backend {backend!r}, which does not accept this kind")
            continue
        out.append((e, decoded[e.index]))
    return out


__all__ = ["ConfigEntry", "ConfigError", "ConfigTypes", "FROM_CLAIM", "FROM_CLASS", "decode_stored",
           "decode_strict", "driver_configs", "resolve"]
