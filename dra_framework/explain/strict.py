"""Strict field checks for the objects ``explain`` reads, like ``kubectl --validate=strict``:
every field of a document must be a field of its Kubernetes type (the typed models of
lightkube-models, generated from the Kubernetes OpenAPI, plus the value types of the
resource.k8s.io maps such as device attributes and capacity; free-form maps such as opaque
parameters and labels are not checked inside). Names are checked as the apiserver does:
``metadata.name`` a DNS subdomain (Pods, claims, templates, classes, slices) and
``metadata.namespace`` a DNS label.
"""
from __future__ import annotations

import functools
import typing
from typing import Any

import msgspec

from ..kubenames import is_dns_label, is_dns_subdomain


@functools.lru_cache(maxsize=None)
def _model(kind: str) -> Any:
    from lightkube.models import core_v1, resource_v1

    return {"ResourceClaim": resource_v1.ResourceClaim, "ResourceClaimTemplate": resource_v1.ResourceClaimTemplate,
            "DeviceClass": resource_v1.DeviceClass, "ResourceSlice": resource_v1.ResourceSlice,
            "Pod": core_v1.Pod, "Node": core_v1.Node}[kind]


@functools.lru_cache(maxsize=None)
def _map_values() -> dict[tuple[Any, str], Any]:
    """The value types of the typed maps the models leave as plain ``dict`` (OpenAPI
    ``additionalProperties``)."""
    from lightkube.models import resource_v1 as r

    return {(r.Device, "attributes"): r.DeviceAttribute, (r.Device, "capacity"): r.DeviceCapacity,
            (r.Device, "nodeAllocatableResources"): r.NodeAllocatableResource,
            (r.CounterSet, "counters"): r.Counter, (r.DeviceCounterConsumption, "counters"): r.Counter}


@functools.lru_cache(maxsize=None)
def _fields(cls: Any) -> dict[str, Any]:
    """JSON field name → type, for one model class (lightkube models are msgspec Structs)."""
    maps = _map_values()
    return {f.encode_name: _MapOf(maps[(cls, f.encode_name)]) if (cls, f.encode_name) in maps else f.type
            for f in msgspec.structs.fields(cls)}


class _MapOf:
    """A map with string keys and values of ``value``."""

    def __init__(self, value: Any):
        self.value = value


def _walk(value: Any, tp: Any, path: str, out: list[str]) -> None:
    if isinstance(tp, _MapOf):
        for k, item in (value.items() if isinstance(value, dict) else ()):
            _walk(item, tp.value, f"{path}[{k}]", out)
        return
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Union:  # Optional[X]
        tp = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (list, typing.List) and isinstance(value, list):
        for i, item in enumerate(value):
            _walk(item, args[0], f"{path}[{i}]", out)
    elif origin in (dict, typing.Dict) and args and isinstance(value, dict):
        for k, item in value.items():
            _walk(item, args[1], f"{path}[{k}]", out)
    elif isinstance(tp, type) and issubclass(tp, msgspec.Struct) and isinstance(value, dict):
        fields = _fields(tp)
        for k, item in value.items():
            sub = f"{path}.{k}" if path else str(k)
            if k not in fields:
                out.append(sub)
            else:
                _walk(item, fields[k], sub, out)


def unknown_fields(obj: dict[str, Any]) -> list[str]:
    """Paths of the fields of ``obj`` (a kind explain reads) that its type does not have."""
    out: list[str] = []
    _walk(obj, _model(obj["kind"]), "", out)
    return out


def name_errors(obj: dict[str, Any]) -> list[str]:
    """``metadata.name`` / ``metadata.namespace`` values the apiserver would refuse."""
    meta = obj.get("metadata") or {}
    out = []
    name = meta.get("name")
    if name is not None and not (isinstance(name, str) and is_dns_subdomain(name)):
        out.append(f"metadata.name: Invalid value: {name!r}: a lowercase RFC 1123 subdomain must consist of lower "
                   "case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character")
    ns = meta.get("namespace")
    if ns is not None and not (isinstance(ns, str) and is_dns_label(ns)):
        out.append(f"metadata.namespace: Invalid value: {ns!r}: a lowercase RFC 1123 label must consist of lower "
                   "case alphanumeric characters or '-', and must start and end with an alphanumeric character")
    return out
