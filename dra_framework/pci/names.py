"""PCI addresses (BDFs) and the device names derived from them.

A PCI function's address is ``DDDD:BB:DD.F`` (domain, bus, device, function; lower-case hex), the
form the kernel uses under ``/sys/bus/pci/devices`` and the value of the standard attribute
``resource.kubernetes.io/pciBusID`` (extended BDF notation, see
https://kubernetes.io/docs/reference/node/dra-standard-device-attributes/).

DRA device names must be DNS labels (lower-case alphanumerics and ``-``, at most 63 characters)
that stay the same across restarts and reboots. The PCI address is a property of the slot, so
``<prefix>-DDDD-BB-DD-F`` (``vf-0000-17-01-0``) is stable, unique on the node and parseable back;
enumeration indexes and netdev names are neither (they shift when a device disappears, and a VF's
netdev vanishes when it is bound to vfio-pci or moved into a pod).
"""
from __future__ import annotations

import re

from ..kubenames import dns_label_problem

#: The standard attribute names (k8s.io/dynamic-resource-allocation/deviceattribute).
PCI_BUS_ID = "resource.kubernetes.io/pciBusID"
PCIE_ROOT = "resource.kubernetes.io/pcieRoot"

#: What upstream accepts as a ``pciBusID`` value: 4-digit domain, lower-case.
STANDARD_BDF_RE = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")
_ANY_BDF_RE = re.compile(r"^(?:(?P<dom>[0-9a-fA-F]{1,8}):)?(?P<bus>[0-9a-fA-F]{2}):(?P<dev>[0-9a-fA-F]{2})\.(?P<fn>[0-7])$")


def normalize_bdf(address: str) -> str:
    """``0000:3B:01.0``, ``00000000:3b:01.0`` (NVML) or ``3b:01.0`` (lspci) → ``0000:3b:01.0``.

    Domains above ``ffff`` (VMD-behind devices, ``10000:e1:00.0``) keep all their digits.
    Raises ValueError naming the input when it is not a PCI address."""
    m = _ANY_BDF_RE.match(address.strip())
    if not m:
        raise ValueError(f"not a PCI address (DDDD:BB:DD.F): {address!r}")
    dom = int(m["dom"] or "0", 16)
    return f"{dom:04x}:{m['bus'].lower()}:{m['dev'].lower()}.{m['fn']}"


def is_standard_bdf(address: str) -> bool:
    """True when ``address`` is a valid ``resource.kubernetes.io/pciBusID`` value as is."""
    return bool(STANDARD_BDF_RE.match(address))


def device_name(address: str, prefix: str = "pci") -> str:
    """``0000:17:01.0`` → ``<prefix>-0000-17-01-0``. ``prefix`` must be a DNS label of at most
    44 characters (the name stays within 63). Raises ValueError for a bad address or prefix."""
    if dns_label_problem(prefix) is not None or len(prefix) > 44:
        raise ValueError(f"device name prefix {prefix!r} must be a DNS label of at most 44 characters")
    dom, bus, rest = normalize_bdf(address).split(":")
    dev, fn = rest.split(".")
    return f"{prefix}-{dom}-{bus}-{dev}-{fn}"


def parse_device_name(name: str, prefix: str = "pci") -> str | None:
    """The PCI address a :func:`device_name` stands for, or None when ``name`` is not one."""
    m = re.match(rf"^{re.escape(prefix)}-([0-9a-f]{{4,8}})-([0-9a-f]{{2}})-([0-9a-f]{{2}})-([0-7])$", name)
    return f"{m[1]}:{m[2]}:{m[3]}.{m[4]}" if m else None
