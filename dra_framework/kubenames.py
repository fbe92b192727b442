"""Kubernetes object-name rules, checked before a name reaches a URL, a file or a log.

A ResourceClaim's namespace is a DNS-1123 label and its name a DNS-1123 subdomain, as the API
server validates them (k8s.io/apimachinery/pkg/util/validation, ``IsDNS1123Label`` and
``IsDNS1123Subdomain``; ResourceClaim names use ``NameIsDNSSubdomain``). A claim UID is an
opaque string from the API server (a UUID in practice); the framework only accepts
``[A-Za-z0-9][A-Za-z0-9._-]*`` up to 128 characters, which every API server UID satisfies and
which is safe in file names. Anything else from the kubelet's gRPC call is refused per claim
(docs/operations.md, "Claim names").
"""
from __future__ import annotations

import re

DNS1123_LABEL_MAX = 63
DNS1123_SUBDOMAIN_MAX = 253
UID_MAX = 128

_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
# used with fullmatch: "$" alone would also accept a trailing newline
_DNS1123_LABEL = re.compile(_LABEL)
_DNS1123_SUBDOMAIN = re.compile(rf"{_LABEL}(\.{_LABEL})*")
_UID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def is_dns_label(value: str) -> bool:
    """``IsDNS1123Label``: at most 63 lower-case alphanumerics or '-', alphanumeric at both ends."""
    return len(value) <= DNS1123_LABEL_MAX and _DNS1123_LABEL.fullmatch(value) is not None


def is_dns_subdomain(value: str) -> bool:
    """``IsDNS1123Subdomain``: at most 253 characters of dot-separated DNS labels."""
    return len(value) <= DNS1123_SUBDOMAIN_MAX and _DNS1123_SUBDOMAIN.fullmatch(value) is not None


def dns_label_problem(value: str) -> str | None:
    """None when ``value`` is a DNS-1123 label, else why not."""
    if not value:
        return "must not be empty"
    if len(value) > DNS1123_LABEL_MAX:
        return f"must be at most {DNS1123_LABEL_MAX} characters (a DNS-1123 label)"
    if not _DNS1123_LABEL.fullmatch(value):
        return "must be a DNS-1123 label (lower-case letters, digits and '-', starting and ending alphanumeric)"
    return None


def dns_subdomain_problem(value: str) -> str | None:
    """None when ``value`` is a DNS-1123 subdomain, else why not."""
    if not value:
        return "must not be empty"
    if len(value) > DNS1123_SUBDOMAIN_MAX:
        return f"must be at most {DNS1123_SUBDOMAIN_MAX} characters (a DNS-1123 subdomain)"
    if not _DNS1123_SUBDOMAIN.fullmatch(value):
        return ("must be a DNS-1123 subdomain (lower-case letters, digits, '-' and '.', each part "
                "starting and ending alphanumeric)")
    return None


#: Longest DRA driver name (ResourceSlice.spec.driver: a DNS subdomain of at most 63 characters).
DRIVER_NAME_MAX = 63


def is_driver_name(value: str) -> bool:
    """Whether ``value`` is a valid DRA driver name (``ResourceSlice.spec.driver``)."""
    return len(value) <= DRIVER_NAME_MAX and dns_subdomain_problem(value) is None


def uid_problem(value: str) -> str | None:
    if not value:
        return "must not be empty"
    if len(value) > UID_MAX or not _UID.fullmatch(value):
        return f"must match [A-Za-z0-9][A-Za-z0-9._-]* (at most {UID_MAX} characters)"
    return None


def claim_ref_problem(namespace: str, name: str, uid: str | None = None) -> str | None:
    """One line naming the first bad field of a claim reference (``namespace``, ``name``,
    ``uid``), with the value quoted; None when all are valid."""
    checks = [("namespace", namespace, dns_label_problem), ("name", name, dns_subdomain_problem)]
    if uid is not None:
        checks.append(("uid", uid, uid_problem))
    for field, value, check in checks:
        why = check(value)
        if why:
            shown = value if len(value) <= 80 else value[:80] + "..."
            return f"claim {field} {shown!r} is invalid: {why}"
    return None


def check_claim_ref(namespace: str, name: str, uid: str | None = None) -> None:
    """Raise ValueError with :func:`claim_ref_problem`'s message for a bad claim reference."""
    why = claim_ref_problem(namespace, name, uid)
    if why:
        raise ValueError(why)
