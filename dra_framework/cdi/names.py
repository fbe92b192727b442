"""CDI names: vendor, class, kind, device names, qualified device IDs and spec file names.

Two levels of rules (docs/cdi-rules.md#names):

* **Go-library rules** (what runtimes enforce when loading; ``pkg/parser/parser.go``):
  :func:`is_go_vendor_or_class`, :func:`is_go_device_name`.
* **Generation rules** (stricter, what this framework writes; docs/cdi-rules.md#names
  and docs/cdi-rules.md#framework-policy): vendor = lower-case DNS subdomain starting with a
  letter, 2..253 chars (:func:`validate_vendor`); class = ``[a-z][a-z0-9-]*[a-z0-9]``, 2..63 chars, no dots
  (:func:`validate_class`); 1-char vendor/class are rejected (libraries <= v1.1.0 panic,
  PR #321); device names ``[A-Za-z0-9][A-Za-z0-9_.-]*[A-Za-z0-9]`` or one alnum char, no
  ``:``/``/`` (:func:`validate_device_name`).

Claim device names (:func:`claim_device_name`)
----------------------------------------------
``<claimUID>-<device>`` and, with a share id, ``<claimUID>-<device>.<shareID>``, escaped into
the generation grammar by this deterministic, injective rule:

* ``esc(s)``: ASCII letters, digits and ``-`` are kept; every other character (including
  ``_``, ``.``, ``:``, ``/`` and non-ASCII) becomes ``_xx`` per UTF-8 byte (lower-case hex);
  a trailing ``-`` becomes ``_2d`` (a name must end with a letter/digit). ``esc`` output never
  contains ``.``, and every ``_`` starts an escape, so it can be decoded.
* claim UID: a canonical UUID (``8-4-4-4-12`` hex digits, as Kubernetes assigns) is kept
  verbatim and followed by ``-``. Any other UID must start with an ASCII letter or digit; it is
  written as ``esc(uid)`` with ``-`` also escaped (``_2d``) and followed by ``.``. So the first
  ``-``/``.`` in a name tells which form was used.
* then ``esc(device)``; then, if ``share_id`` is given, ``.`` + ``esc(share_id)``.

Examples: ``("0b5e9a2c-1d2e-4f00-8a9b-0123456789ab", "gpu-0")`` ->
``0b5e9a2c-1d2e-4f00-8a9b-0123456789ab-gpu-0``; with share id ``s1`` ->
``...-gpu-0.s1``; ``("uid-1", "gpu_0")`` -> ``uid_2d1.gpu_5f0``.
The mapping is injective over its whole domain (non-empty device; share id non-empty when
given; claim UID non-empty and UUID-shaped or starting with a letter/digit);
:func:`parse_claim_device_name` inverts it. A name starting with a digit needs cdiVersion
>= 0.5.0, which :mod:`dra_framework.cdi.version` computes.

Spec file names (docs/cdi-rules.md#file-names)
----------------------------------------------
Per claim: ``<vendor>-<class>_<claimUID>.json`` (:func:`claim_spec_file_name`); one common spec
per driver: ``<vendor>-<class>_common.json`` holding the single device ``common``
(:data:`COMMON_DEVICE_NAME`), as dra-example-driver does. The claim UID ``common`` is therefore
reserved, and a claim UID used in a file name must match ``[A-Za-z0-9][A-Za-z0-9._-]*`` (any
Kubernetes UID does).
"""
from __future__ import annotations

import re

from .errors import CdiValidationError

# Go library (pkg/parser/parser.go): first letter, middle [A-Za-z0-9_.-], last letter/digit.
_GO_VENDOR_CLASS = re.compile(r"[A-Za-z](?:[A-Za-z0-9_.-]*[A-Za-z0-9])?\Z")
_GO_DEVICE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_.:-]*[A-Za-z0-9])?\Z")

_DNS_LABEL = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
_VENDOR = re.compile(rf"[a-z](?:[a-z0-9-]*[a-z0-9])?(?:\.{_DNS_LABEL})*\Z")
_CLASS = re.compile(r"[a-z][a-z0-9-]*[a-z0-9]\Z")
_DEVICE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_.-]*[A-Za-z0-9])?\Z")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z")
_FILE_UID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z")
_KEEP = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-")
_ALNUM = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")

#: Device name of the single device in the per-driver common spec.
COMMON_DEVICE_NAME = "common"
#: Suffix id of the per-driver common spec file (``<vendor>-<class>_common.json``).
COMMON_SPEC_ID = "common"
SPEC_EXTENSION = ".json"


def is_go_vendor_or_class(s: str) -> bool:
    """Go-library syntax of a vendor or class (docs/cdi-rules.md#names). Note: 1-char names pass
    here but panic in libraries <= v1.1.0; :func:`validate_vendor`/:func:`validate_class` reject them."""
    return bool(_GO_VENDOR_CLASS.match(s))


def is_go_device_name(s: str) -> bool:
    """Go-library syntax of a device name (docs/cdi-rules.md#names; allows ``:``)."""
    return bool(_GO_DEVICE.match(s))


def is_device_name(s: str) -> bool:
    """Generation grammar of a device name: ``[A-Za-z0-9]([A-Za-z0-9_.-]*[A-Za-z0-9])?``."""
    return bool(_DEVICE.match(s))


def validate_vendor(vendor: str) -> str:
    """Check a vendor (kind prefix) against the generation rule: lower-case DNS subdomain whose
    first character is a letter, 2..253 chars (docs/cdi-rules.md#names). Returns it; raises
    :class:`CdiValidationError`."""
    if not (2 <= len(vendor) <= 253 and _VENDOR.match(vendor)):
        raise CdiValidationError(
            f"vendor {vendor!r}: must be a lower-case DNS subdomain starting with a letter, 2-253 chars (docs/cdi-rules.md#names)")
    return vendor


def validate_class(class_: str) -> str:
    """Check a device class against the generation rule ``[a-z][a-z0-9-]*[a-z0-9]``, 2..63 chars,
    no dots (a dot would force cdiVersion 0.6.0; docs/cdi-rules.md#names). Raises
    :class:`CdiValidationError`."""
    if not (len(class_) <= 63 and _CLASS.match(class_)):
        raise CdiValidationError(
            f"class {class_!r}: must match [a-z][a-z0-9-]*[a-z0-9] and be at most 63 chars (docs/cdi-rules.md#names)")
    return class_


def validate_kind(kind: str) -> tuple[str, str]:
    """Split ``vendor/class`` at the first ``/`` and check both with the generation rules.
    Returns ``(vendor, class)``; raises :class:`CdiValidationError`."""
    vendor, sep, class_ = kind.partition("/")
    if not sep:
        raise CdiValidationError(f"kind {kind!r}: must be vendor/class")
    return validate_vendor(vendor), validate_class(class_)


def validate_device_name(name: str) -> str:
    """Check a device name against the generation grammar (docs/cdi-rules.md#names: starts/ends
    with a letter or digit, ``_ . -`` inside, no ``:``/``/``). Raises :class:`CdiValidationError`."""
    if not is_device_name(name):
        raise CdiValidationError(
            f"device name {name!r}: must match [A-Za-z0-9]([A-Za-z0-9_.-]*[A-Za-z0-9])? (docs/cdi-rules.md#names)")
    return name


def qualified_name(kind: str, name: str) -> str:
    """The fully qualified CDI device ID ``vendor/class=name`` (what CRI ``CDIDevices`` and DRA
    ``cdi_device_ids`` carry; docs/cdi-rules.md#names). ``kind`` is ``vendor/class``. Raises
    :class:`CdiValidationError` if any part breaks the generation grammar."""
    validate_kind(kind)
    validate_device_name(name)
    return f"{kind}={name}"


def parse_qualified_name(qualified: str) -> tuple[str, str, str]:
    """Split ``vendor/class=name`` the way the Go parser does (first ``=``, then first ``/``) and
    check each part with the Go-library rules. Returns ``(vendor, class, name)``; raises
    :class:`CdiValidationError`."""
    if not qualified or qualified.startswith("/"):
        raise CdiValidationError(f"qualified device name {qualified!r}: empty or starts with '/'")
    kind, eq, name = qualified.partition("=")
    vendor, sl, class_ = kind.partition("/")
    if not (eq and sl and vendor and class_ and name):
        raise CdiValidationError(f"qualified device name {qualified!r}: must be vendor/class=name")
    if not (is_go_vendor_or_class(vendor) and is_go_vendor_or_class(class_) and is_go_device_name(name)):
        raise CdiValidationError(f"qualified device name {qualified!r}: invalid vendor, class or name syntax")
    return vendor, class_, name


# --- claim device names ---------------------------------------------------------------------


def _esc(s: str, *, escape_dash: bool = False) -> str:
    out: list[str] = []
    n = len(s)
    for i, ch in enumerate(s):
        if ch in _KEEP and not (ch == "-" and (escape_dash or i == n - 1)):
            out.append(ch)
        else:
            out.extend(f"_{b:02x}" for b in ch.encode("utf-8"))
    return "".join(out)


def _unesc(s: str) -> str:
    buf = bytearray()
    i = 0
    while i < len(s):
        if s[i] == "_":
            h = s[i + 1:i + 3]
            if len(h) != 2 or any(c not in "0123456789abcdef" for c in h):
                raise ValueError(f"bad escape in {s!r}")
            buf.append(int(h, 16))
            i += 3
        else:
            buf.extend(s[i].encode())
            i += 1
    return buf.decode("utf-8")


def claim_device_name(claim_uid: str, device: str, share_id: str | None = None) -> str:
    """CDI device name for ``device`` of claim ``claim_uid`` (optionally a shared allocation
    ``share_id``), escaped into the device-name grammar by the rule in the module docstring.

    Deterministic and injective; the result always satisfies :func:`is_device_name`. Raises
    ``ValueError`` for an empty ``device``, an empty ``share_id`` (use ``None``), or a claim UID
    that is empty or neither UUID-shaped nor starting with an ASCII letter/digit.
    """
    if not device:
        raise ValueError("device name must not be empty")
    if share_id is not None and not share_id:
        raise ValueError("share_id must be None or non-empty")
    if _UUID.match(claim_uid):
        head = claim_uid + "-"
    elif claim_uid and claim_uid[0] in _ALNUM:
        head = _esc(claim_uid, escape_dash=True) + "."
    else:
        raise ValueError(f"claim UID {claim_uid!r} must be a UUID or start with an ASCII letter or digit")
    name = head + _esc(device)
    if share_id is not None:
        name += "." + _esc(share_id)
    return name


def parse_claim_device_name(name: str) -> tuple[str, str, str | None]:
    """Invert :func:`claim_device_name`: returns ``(claim_uid, device, share_id)``.
    Raises ``ValueError`` when ``name`` was not produced by it."""
    if _UUID.match(name[:36]) and name[36:37] == "-":
        uid, rest = name[:36], name[37:]
    else:
        uid_esc, dot, rest = name.partition(".")
        if not dot or "-" in uid_esc:
            raise ValueError(f"{name!r} is not a claim device name")
        uid = _unesc(uid_esc)
    dev_esc, dot, share_esc = rest.partition(".")
    if not dev_esc or (dot and not share_esc) or "." in share_esc:
        raise ValueError(f"{name!r} is not a claim device name")
    device, share = _unesc(dev_esc), (_unesc(share_esc) if dot else None)
    if claim_device_name(uid, device, share) != name:
        raise ValueError(f"{name!r} is not a canonical claim device name")
    return uid, device, share


# --- file names -----------------------------------------------------------------------------


def spec_file_prefix(vendor: str, class_: str) -> str:
    """``<vendor>-<class>_`` — the prefix of every transient spec file of this kind (Go
    ``GenerateTransientSpecName``; docs/cdi-rules.md#file-names)."""
    return f"{vendor}-{class_}_"


def check_claim_uid_for_file(claim_uid: str) -> str:
    """A claim UID usable in a file name: ``[A-Za-z0-9][A-Za-z0-9._-]*`` and not the reserved
    ``common``. Raises ``ValueError``."""
    if not _FILE_UID.match(claim_uid) or claim_uid == COMMON_SPEC_ID:
        raise ValueError(f"claim UID {claim_uid!r} cannot be used in a CDI spec file name "
                         f"(must match [A-Za-z0-9][A-Za-z0-9._-]* and not be {COMMON_SPEC_ID!r})")
    return claim_uid


def claim_spec_file_name(vendor: str, class_: str, claim_uid: str) -> str:
    """``<vendor>-<class>_<claimUID>.json`` (docs/cdi-rules.md#file-names). Raises ``ValueError`` for a UID
    not allowed by :func:`check_claim_uid_for_file`."""
    return spec_file_prefix(vendor, class_) + check_claim_uid_for_file(claim_uid) + SPEC_EXTENSION


def common_spec_file_name(vendor: str, class_: str) -> str:
    """``<vendor>-<class>_common.json``: the one per-driver common spec (docs/cdi-rules.md#file-names)."""
    return spec_file_prefix(vendor, class_) + COMMON_SPEC_ID + SPEC_EXTENSION
