"""Minimum required ``cdiVersion`` of a spec (docs/cdi-rules.md#minimum-version; port of ``specs-go/version.go``
``MinimumRequiredVersion`` at CDI 1.1.0).

A runtime rejects any file declaring a cdiVersion newer than its CDI library knows, even when the
file uses no new feature (docs/cdi-rules.md#runtime-versions: containerd 1.7.0-1.7.11 only knows <= 0.5.0). So the
generator writes the *minimum* version the content needs, never the newest.

Algorithm: walk the versions newest to oldest (1.1.0, 1.0.0, 0.8.0, 0.7.0, 0.6.0, 0.5.0, 0.4.0);
the first whose predicate holds for the spec (top-level ``containerEdits`` and every
``devices[].containerEdits`` are inspected) is the answer, else ``0.3.0``. Predicates (docs/cdi-rules.md#versions):

* 1.1.0 — non-empty ``netDevices``; ``intelRdt.schemata`` present (even ``[]``); ``intelRdt.enableMonitoring`` true
* 1.0.0, 0.8.0 — never (Go API-only releases)
* 0.7.0 — ``intelRdt`` present (non-null); non-empty ``additionalGids``
* 0.6.0 — non-empty spec or device ``annotations``; a ``.`` in the class part of ``kind``
* 0.5.0 — a device node with non-empty ``hostPath``; a device ``name`` starting with a digit
* 0.4.0 — a mount with non-empty ``type``
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from .errors import CdiValidationError

#: Every version string the CDI 1.1.0 library knows (``specs-go/version.go``), oldest first.
KNOWN_VERSIONS: tuple[str, ...] = ("0.1.0", "0.2.0", "0.3.0", "0.4.0", "0.5.0", "0.6.0", "0.7.0",
                                    "0.8.0", "1.0.0", "1.1.0")
#: Oldest version a runtime accepts (``vEarliest``); the answer when no feature needs more.
EARLIEST_VERSION = "0.3.0"
#: Newest spec version (``CurrentVersion``).
CURRENT_VERSION = "1.1.0"


def version_key(v: str) -> tuple[int, int, int]:
    """``"0.5.0"`` or ``"v0.5.0"`` -> ``(0, 5, 0)`` for comparisons. Raises ``ValueError``."""
    major, minor, patch = v.removeprefix("v").split(".")
    return int(major), int(minor), int(patch)


def _edits(spec: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    top = spec.get("containerEdits")
    if isinstance(top, Mapping):
        yield top
    for d in spec.get("devices") or ():
        if isinstance(d, Mapping) and isinstance(d.get("containerEdits"), Mapping):
            yield d["containerEdits"]


def _devices(spec: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    for d in spec.get("devices") or ():
        if isinstance(d, Mapping):
            yield d


def _requires_1_1_0(spec: Mapping[str, Any]) -> bool:
    for e in _edits(spec):
        if e.get("netDevices"):
            return True
        rdt = e.get("intelRdt")
        if isinstance(rdt, Mapping) and (rdt.get("schemata") is not None or rdt.get("enableMonitoring") is True):
            return True
    return False


def _requires_0_7_0(spec: Mapping[str, Any]) -> bool:
    return any(e.get("intelRdt") is not None or bool(e.get("additionalGids")) for e in _edits(spec))


def _requires_0_6_0(spec: Mapping[str, Any]) -> bool:
    if spec.get("annotations") or any(d.get("annotations") for d in _devices(spec)):
        return True
    kind = spec.get("kind")
    return isinstance(kind, str) and "." in kind.partition("/")[2]


def _requires_0_5_0(spec: Mapping[str, Any]) -> bool:
    for d in _devices(spec):
        name = d.get("name")
        if isinstance(name, str) and name[:1].isascii() and name[:1].isdigit():
            return True
    return any(isinstance(n, Mapping) and n.get("hostPath")
               for e in _edits(spec) for n in (e.get("deviceNodes") or ()))


def _requires_0_4_0(spec: Mapping[str, Any]) -> bool:
    return any(isinstance(m, Mapping) and m.get("type") for e in _edits(spec) for m in (e.get("mounts") or ()))


_PREDICATES: tuple[tuple[str, Callable[[Mapping[str, Any]], bool]], ...] = (
    ("1.1.0", _requires_1_1_0),
    ("0.7.0", _requires_0_7_0),
    ("0.6.0", _requires_0_6_0),
    ("0.5.0", _requires_0_5_0),
    ("0.4.0", _requires_0_4_0),
)


def minimum_version(spec: Mapping[str, Any]) -> str:
    """Minimum cdiVersion (bare string, e.g. ``"0.5.0"``) that the CDI JSON document ``spec``
    (a dict with camelCase keys; ``cdiVersion`` itself is ignored) requires. Never raises for
    malformed input: unknown shapes are ignored."""
    for version, needs in _PREDICATES:
        if needs(spec):
            return version
    return EARLIEST_VERSION


def check_version(spec: Mapping[str, Any]) -> str:
    """The Go ``ValidateVersion`` check (docs/cdi-rules.md#minimum-version): strip one leading ``v``; the version must
    be one of :data:`KNOWN_VERSIONS`; the computed minimum must not be newer (so 0.1.0/0.2.0
    always fail). Returns the declared version without ``v``; raises :class:`CdiValidationError`."""
    declared = spec.get("cdiVersion")
    if not isinstance(declared, str):
        raise CdiValidationError("cdiVersion: missing or not a string")
    v = declared.removeprefix("v")
    if v not in KNOWN_VERSIONS:
        raise CdiValidationError(f"cdiVersion: invalid version {declared!r}")
    need = minimum_version(spec)
    if version_key(need) > version_key(v):
        raise CdiValidationError(f"cdiVersion: the spec version must be at least v{need}, got {declared!r}")
    return v
