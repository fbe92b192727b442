"""Find the SR-IOV VFs of network-class PCI functions under the host root (docs/pci.md).

Network functions are class ``02xxxx`` (``0200`` Ethernet, ``0207`` InfiniBand). VFs are found
only through their PF's ``virtfn<N>`` links (``N`` is the VF index the PF uses in netlink), never
from computed addresses. What is read, per VF (``/sys/bus/pci/devices/<bdf>/``):

* ids, ``driver``, ``iommu_group``, ``numa_node`` and the standard attributes (from the kit);
* the PF's netdev (``net/<ifname>``; in switchdev mode the uplink, the one without a
  ``pfNvfM``-style ``phys_port_name``), its ``type`` (1 Ethernet, 32 InfiniBand,
  https://www.kernel.org/doc/Documentation/ABI/testing/sysfs-class-net), ``speed`` (Mb/s) and
  ``operstate``; ``compat/devlink/mode`` for the e-switch mode (``legacy`` when absent);
* RDMA: ``infiniband/<dev>`` (the RDMA device), ``infiniband_verbs/uverbs<N>``,
  ``infiniband_mad/umad<N>`` and ``issm<N>`` (the character devices under ``/dev/infiniband``).

The VF's own netdev is not needed (it may be inside a pod or absent on vfio-pci).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dra_framework.api import PciFunction, walk_pci

from .options import Selector, vf_ranges

LINK_TYPES = {"1": "ethernet", "32": "infiniband"}
_REPRESENTOR = re.compile(r"^(pf\d+)?(vf|sf)\d+$|^c\d+pf\d+")


def _read(p: Path) -> str | None:
    try:
        return p.read_text().strip()
    except OSError:
        return None


def _ls(p: Path) -> list[str]:
    try:
        return sorted(os.listdir(p))
    except OSError:
        return []


@dataclass(frozen=True)
class Vf:
    """One VF as discovery saw it; ``attrs`` are the published attributes (unqualified names
    belong to the driver's domain)."""

    bdf: str
    index: int
    pf_bdf: str
    pf_name: str | None
    vendor: str
    device: str
    driver: str | None
    link_type: str
    rdma_device: str | None
    rdma_char: tuple[str, ...]
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def ident(self) -> str:
        return f"{self.vendor}:{self.device}"


def pf_netdev(pf: PciFunction) -> str | None:
    """The PF's uplink netdev: the only one, or the one that is not a representor."""
    names = pf.netdevs()
    uplinks = [n for n in names if not _REPRESENTOR.match(_read(pf.path / "net" / n / "phys_port_name") or "")]
    found = uplinks or names
    return found[0] if found else None


def link_type(pf: PciFunction, ifname: str | None) -> str:
    t = _read(pf.path / "net" / ifname / "type") if ifname else None
    if t in LINK_TYPES:
        return LINK_TYPES[t]
    cls = pf.class_code or ""
    return "infiniband" if cls.startswith("0207") else "ethernet" if cls.startswith("0200") else "unknown"


def rdma_info(vf: PciFunction) -> tuple[str | None, tuple[str, ...]]:
    """(RDMA device name, its character devices as host paths) of a function."""
    devs = _ls(vf.path / "infiniband")
    if not devs:
        return None, ()
    chars = [f"/dev/infiniband/{n}" for n in _ls(vf.path / "infiniband_verbs")]
    chars += [f"/dev/infiniband/{n}" for n in _ls(vf.path / "infiniband_mad")]
    return devs[0], tuple(chars)


def scan(host_root: Path) -> tuple[list[Vf], list[tuple[str, str]]]:
    """All VFs of network-class PFs, and the functions skipped with the reason."""
    vfs: list[Vf] = []
    skipped: list[tuple[str, str]] = []
    listed: set[str] = set()
    for fn in walk_pci(host_root, class_prefix="02"):
        if fn.is_vf:
            continue
        children = fn.virtfns()
        if not children:
            skipped.append((fn.bdf, "network function without SR-IOV VFs (only VFs are offered)"))
            continue
        skipped.append((fn.bdf, f"SR-IOV PF with {len(children)} VFs (its VFs are offered, not the PF)"))
        ifname = pf_netdev(fn)
        ltype = link_type(fn, ifname)
        speed = _read(fn.path / "net" / ifname / "speed") if ifname else None
        mode = (_read(fn.path / "net" / ifname / "compat/devlink/mode") if ifname else None) or "legacy"
        for index, vf in children.items():
            listed.add(vf.bdf)
            if not vf.exists():
                skipped.append((vf.bdf, f"virtfn{index} of {fn.bdf} points to a missing function"))
                continue
            rdma, chars = rdma_info(vf)
            attrs: dict[str, Any] = {
                **vf.standard_attributes(),
                "vendor": vf.vendor or "", "deviceID": vf.device or "", "pfDeviceID": fn.device or "",
                "pciAddress": vf.bdf, "pfPciAddress": fn.bdf, "vfID": index, "linkType": ltype,
                "eswitchMode": mode, "rdma": rdma is not None, "currentDriver": vf.driver or "none",
            }
            if ifname:
                attrs["pfName"] = ifname
            if speed and speed.isdigit() and int(speed) > 0:
                attrs["linkSpeed"] = int(speed)
            numa = vf.numa_node if vf.numa_node is not None else fn.numa_node
            if numa is not None:  # the keys other network drivers and the nvidia backend align on
                attrs["dra.net/numaNode"] = numa
                attrs["resource.kubernetes.io/numaNode"] = numa
            vfs.append(Vf(vf.bdf, index, fn.bdf, ifname, vf.vendor or "", vf.device or "", vf.driver, ltype,
                          rdma, chars, attrs))
    for fn in walk_pci(host_root, class_prefix="02", vfs=True):
        if fn.bdf not in listed:
            skipped.append((fn.bdf, "VF not listed by any network PF's virtfn links"))
    return vfs, skipped


def selected(vf: Vf, sel: Selector) -> bool:
    """Whether ``vf`` matches every field ``sel`` sets (options.Selector)."""
    if sel.vendors and vf.vendor not in sel.vendors or sel.devices and vf.device not in sel.devices:
        return False
    if sel.drivers and (vf.driver or "") not in sel.drivers:
        return False
    if sel.pci_addresses and vf.bdf not in sel.pci_addresses:
        return False
    if sel.pf_pci_addresses and vf.pf_bdf not in sel.pf_pci_addresses:
        return False
    if sel.link_types and vf.link_type not in sel.link_types:
        return False
    if sel.rdma is not None and (vf.rdma_device is not None) != sel.rdma:
        return False
    if sel.pf_names:
        for spec in sel.pf_names:
            pf, ranges = vf_ranges(spec)
            if pf == vf.pf_name and (ranges is None or vf.index in ranges):
                break
        else:
            return False
    return True
