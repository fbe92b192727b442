"""Requests, results, taints and constraints as the allocator's search sees them
(``requestData``, ``resourceclaim.ToleratesTaint``, ``lookupStaticAttribute`` and the
matchAttribute / distinctAttribute constraints of k8s.io/dynamic-resource-allocation/structured).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from .model import Device, Pool, Slice, qty


@dataclass
class Request:
    """One request or subrequest as the search sees it (``requestData``)."""

    name: str
    parent: str
    spec: dict[str, Any]
    cls: dict[str, Any] | None = None
    claim: int = 0  # index of its claim in the search
    num: int = 0
    all_devices: list[tuple[Device, Slice, Pool]] = field(default_factory=list)

    @property
    def full_name(self) -> str:
        return f"{self.parent}/{self.name}" if self.parent else self.name

    mode: str = "ExactCount"
    admin: bool = False
    tolerations: list[dict[str, Any]] = field(default_factory=list)
    capacity: dict[str, Decimal] | None = None

    def __post_init__(self) -> None:
        self.mode = self.spec.get("allocationMode") or "ExactCount"
        self.admin = bool(self.spec.get("adminAccess"))
        self.tolerations = self.spec.get("tolerations") or []
        reqs = (self.spec.get("capacity") or {}).get("requests")
        self.capacity = None if reqs is None else {k: qty(v) for k, v in reqs.items()}


@dataclass
class Result:
    request: Request
    device: Device
    consumed: dict[str, Decimal] | None = None
    share_id: str | None = None


def tolerates(tol: dict[str, Any], taint: dict[str, Any]) -> bool:
    """resourceclaim.ToleratesTaint."""
    if tol.get("effect") and tol["effect"] != taint.get("effect"):
        return False
    if tol.get("key") and tol["key"] != taint.get("key"):
        return False
    op = tol.get("operator") or "Equal"
    if op == "Equal":
        return (tol.get("value") or "") == (taint.get("value") or "")
    return op == "Exists"


def untolerated_taint(device: Device, req: Request, legacy: bool) -> dict[str, Any] | None:
    for taint in device.taints:
        if not legacy and taint.get("effect") not in ("NoSchedule", "NoExecute"):
            continue
        if not any(tolerates(t, taint) for t in req.tolerations):
            return taint
    return None


def lookup_attribute(device: Device, name: str) -> dict[str, Any] | None:
    """``lookupStaticAttribute``: ``dom/id`` as published, or ``id`` when dom is the driver."""
    if name in device.attributes:
        return device.attributes[name]
    dom, sep, ident = name.partition("/")
    if sep and dom == device.driver:
        return device.attributes.get(ident)
    return None


def attr_set(a: dict[str, Any] | None) -> tuple[str, frozenset[Any]] | None:
    if a is None:
        return None
    for k in ("ints", "bools", "strings", "versions"):
        if a.get(k):
            return (k.rstrip("s"), frozenset(a[k]))
    for k in ("int", "bool", "string", "version"):
        if k in a and a[k] is not None:
            return (k, frozenset([a[k]]))
    return None


class Constraint:
    """matchAttribute (same value, or a common value of list attributes) / distinctAttribute.

    ``legacy``: the 1.34 distinctAttribute, which compared the attribute values' pointers (so
    only the same device counts as a duplicate), kept one value per request name and let the
    first device in always (``distinctAttributeConstraint`` in 1.34's constraint.go).
    """

    def __init__(self, spec: dict[str, Any], legacy: bool = False):
        self.requests = set(spec.get("requests") or [])
        self.distinct = "distinctAttribute" in spec and "matchAttribute" not in spec
        self.attribute = spec.get("distinctAttribute") if self.distinct else spec.get("matchAttribute")
        self.stack: list[tuple[str, frozenset[Any]]] = []
        self.legacy = legacy and self.distinct
        self.by_request: dict[str, tuple[str, str, str]] = {}
        self.count = 0

    def applies(self, req: Request) -> bool:
        if not self.requests:
            return True
        return (req.parent or req.name) in self.requests or (bool(req.parent) and req.full_name in self.requests)

    def add(self, req: Request, device: Device) -> bool:
        if not self.applies(req):
            return True
        s = attr_set(lookup_attribute(device, str(self.attribute)))
        if s is None:
            return False
        if self.legacy:
            if self.count and device.id in self.by_request.values():
                return False
            self.by_request[req.parent or req.name] = device.id
            self.count += 1
            return True
        if self.distinct:
            if any(e[0] == s[0] and e[1] & s[1] for e in self.stack):
                return False
            self.stack.append(s)
            return True
        if self.stack:
            top = self.stack[-1]
            if top[0] != s[0] or not top[1] & s[1]:
                return False
            s = (s[0], top[1] & s[1])
        self.stack.append(s)
        return True

    def remove(self, req: Request) -> None:
        if not self.applies(req):
            return
        if self.legacy:  # forgets the request's value even when it still holds other devices
            self.by_request.pop(req.parent or req.name, None)
            self.count -= 1
        else:
            self.stack.pop()
