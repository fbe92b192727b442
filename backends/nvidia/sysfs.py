"""PCI facts from sysfs under the host root: NUMA node and PCIe root complex."""
from __future__ import annotations

import os
import re
from pathlib import Path

_ROOT_RE = re.compile(r"^pci[0-9a-f]{4}:[0-9a-f]{2}$")


def numa_node(host_root: Path, bdf: str) -> int | None:
    """``/sys/bus/pci/devices/<bdf>/numa_node``; None when missing or -1 (unknown)."""
    try:
        v = int((host_root / "sys/bus/pci/devices" / bdf / "numa_node").read_text().strip())
    except (OSError, ValueError):
        return None
    return v if v >= 0 else None


def pcie_root(host_root: Path, bdf: str) -> str | None:
    """The ``pciDDDD:BB`` component of the device's sysfs path (what
    ``deviceattribute.GetPCIeRootAttributeByPCIBusID`` publishes), or None."""
    link = host_root / "sys/bus/pci/devices" / bdf
    try:
        target = os.readlink(link)
    except OSError:
        return None
    for part in Path(target).parts:
        if _ROOT_RE.match(part):
            return part
    return None
