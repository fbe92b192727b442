"""Name and version formats of the API server (k8s.io/apimachinery/pkg/util/validation and
resource.k8s.io/v1 validation): DNS labels and subdomains, qualified names, label keys and
values, C identifiers, and SemVer normalization of version attributes. Re-exported by
:mod:`dra_framework.slices.validate`."""
from __future__ import annotations

import re

from ..kubenames import is_dns_subdomain

# --- name formats (k8s.io/apimachinery/pkg/util/validation) -------------------------------------

_C_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_QUALIFIED_NAME_PART = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")

#: resource.k8s.io/v1 limits (types.go constants).
DEVICE_MAX_DOMAIN_LENGTH = 63
DEVICE_MAX_ID_LENGTH = 32
DRIVER_NAME_MAX_LENGTH = 63
POOL_NAME_MAX_LENGTH = 253
ATTRIBUTE_MAX_VALUE_LENGTH = 64
MAX_ATTRIBUTES_AND_CAPACITIES = 32
MAX_ATTRIBUTE_VALUES = 48  # scalar + list items, 1.36+
MAX_COUNTERS_PER_SET = 32
MAX_COUNTERS_PER_CONSUMPTION = 32
MAX_VALID_VALUES = 10
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

# The API server's SemVer 2.0.0 regexp (validation.go semverRe).
_NUM = r"(0|[1-9]\d*)"
_PRE = r"(0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)"
_BUILD = r"[0-9a-zA-Z-]+"
SEMVER_RE = re.compile(rf"^{_NUM}\.{_NUM}\.{_NUM}(-{_PRE}(\.{_PRE})*)?(\+{_BUILD}(\.{_BUILD})*)?$")


def driver_name_errors(name: str) -> list[str]:
    """ValidateCSIDriverName: ≤63 characters, DNS subdomain after lower-casing."""
    errs = []
    if not name:
        return ["must not be empty"]
    if len(name) > DRIVER_NAME_MAX_LENGTH:
        errs.append(f"must be no more than {DRIVER_NAME_MAX_LENGTH} characters")
    if not is_dns_subdomain(name.lower()):
        errs.append("must be a DNS subdomain (lowercase alphanumerics, '-' and '.')")
    return errs


def pool_name_errors(name: str) -> list[str]:
    if not name:
        return ["must not be empty"]
    errs = []
    if len(name) > POOL_NAME_MAX_LENGTH:
        errs.append(f"must be no more than {POOL_NAME_MAX_LENGTH} characters")
    for part in name.split("/"):
        if not is_dns_subdomain(part):
            errs.append(f"part {part!r} must be a DNS subdomain")
    return errs


def _c_identifier_errors(ident: str) -> list[str]:
    errs = []
    if len(ident) > DEVICE_MAX_ID_LENGTH:
        errs.append(f"identifier {ident!r} must be no more than {DEVICE_MAX_ID_LENGTH} characters")
    if not _C_IDENTIFIER.match(ident):
        errs.append(f"identifier {ident!r} must be a C identifier ([A-Za-z_][A-Za-z0-9_]*)")
    return errs


def qualified_name_errors(name: str) -> list[str]:
    """Attribute / capacity key: C identifier (≤32), optionally prefixed by a domain (≤63) and '/'."""
    parts = name.split("/")
    if len(parts) == 1:
        return _c_identifier_errors(parts[0])
    if len(parts) > 2:
        return ["must not contain more than one slash"]
    errs = []
    domain, ident = parts
    if not domain:
        errs.append("the domain must not be empty")
    else:
        errs += [f"domain {domain!r} {e}" for e in driver_name_errors(domain)]
    if not ident:
        errs.append("the name must not be empty")
    else:
        errs += _c_identifier_errors(ident)
    return errs


def label_name_errors(key: str) -> list[str]:
    """metav1validation.ValidateLabelName (a qualified name with an optional DNS-subdomain prefix)."""
    if not key:
        return ["must not be empty"]
    parts = key.split("/")
    if len(parts) > 2:
        return ["must consist of an optional DNS subdomain prefix and a name, separated by '/'"]
    errs = []
    if len(parts) == 2:
        prefix, key = parts
        if not prefix:
            errs.append("prefix part must not be empty")
        elif not is_dns_subdomain(prefix):
            errs.append(f"prefix {prefix!r} must be a DNS subdomain")
    if not key:
        errs.append("name part must not be empty")
    elif len(key) > 63:
        errs.append("name part must be no more than 63 characters")
    elif not _QUALIFIED_NAME_PART.match(key):
        errs.append(f"name part {key!r} must consist of alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric")
    return errs


def label_value_errors(value: str) -> list[str]:
    if len(value) > 63:
        return ["must be no more than 63 characters"]
    if not _LABEL_VALUE.match(value):
        return ["must be empty or consist of alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric"]
    return []


# --- versions ----------------------------------------------------------------------------------

_NUMERIC_PREFIX = re.compile(r"^[vV]?(\d+(?:\.\d+)*)([-+].*)?$")


def normalize_version(raw: str) -> str | None:
    """Return ``raw`` as a valid SemVer 2.0.0 string (≤64 chars) or None if it cannot be made one.

    Normalization rule (documented in docs/resourceslices.md):

    1. Valid SemVer is kept as is.
    2. A leading ``v`` is dropped.
    3. The leading dot-separated numeric components are parsed as integers, which strips leading
       zeros: ``535.183.06`` → ``535.183.6``.
    4. Missing components are filled with 0: ``12.4`` → ``12.4.0``, ``12`` → ``12.0.0``.
    5. Components after the third move into build metadata, which SemVer ignores for ordering:
       ``6.19.14.31400000`` → ``6.19.14+31400000``. An existing ``-pre``/``+build`` suffix is
       kept after them (extra components join an existing build part with '.').
    6. Anything else (letters in numeric parts, empty components, too long) cannot be normalized.

    Caveat: rule 3 makes ``535.183.06`` and ``535.183.6`` the same version; rule 5 means
    ``1.2.3.4`` and ``1.2.3.5`` compare equal in CEL ``semver`` comparisons.
    """
    s = raw.strip()
    if SEMVER_RE.match(s) and len(s) <= ATTRIBUTE_MAX_VALUE_LENGTH:
        return s
    m = _NUMERIC_PREFIX.match(s)
    if not m:
        return None
    nums = [str(int(p)) for p in m.group(1).split(".")]
    suffix = m.group(2) or ""
    core, extra = nums[:3], nums[3:]
    while len(core) < 3:
        core.append("0")
    out = ".".join(core)
    pre, build = "", ""
    if suffix.startswith("-"):
        pre, _, build = suffix[1:].partition("+")
    elif suffix.startswith("+"):
        build = suffix[1:]
    if extra:
        build = ".".join(extra + ([build] if build else []))
    if pre:
        out += "-" + pre
    if build:
        out += "+" + build
    if SEMVER_RE.match(out) and len(out) <= ATTRIBUTE_MAX_VALUE_LENGTH:
        return out
    return None
