"""PCI facts from sysfs under the host root: NUMA node and PCIe root complex (the shared PCI
helpers of :mod:`dra_framework.api`, docs/pci.md)."""
from __future__ import annotations

from pathlib import Path

from dra_framework.api import PciFunction
from dra_framework.api import pcie_root as _pcie_root


def numa_node(host_root: Path, bdf: str) -> int | None:
    """``/sys/bus/pci/devices/<bdf>/numa_node``; None when missing or -1 (unknown)."""
    return PciFunction(Path(host_root), bdf).numa_node


def pcie_root(host_root: Path, bdf: str) -> str | None:
    """``resource.kubernetes.io/pcieRoot`` as upstream computes it, or None."""
    return _pcie_root(host_root, bdf)
