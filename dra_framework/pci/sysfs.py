"""PCI functions as sysfs shows them, read under a host root.

Everything is read through ``<hostRoot>/sys/bus/pci/devices/<bdf>`` (a symlink into
``/sys/devices/pci<domain>:<bus>/...``), so a sample host is a plain directory tree (see
:mod:`dra_framework.testing.hosttree`). The layout follows the kernel's ABI documents
(https://www.kernel.org/doc/Documentation/ABI/testing/sysfs-bus-pci):

* ``vendor``, ``device``, ``class``, ``subsystem_vendor``, ``subsystem_device``: ``0x``-prefixed hex;
* ``driver``: symlink to ``/sys/bus/pci/drivers/<name>`` (absent when no driver is bound);
* SR-IOV: a VF has ``physfn`` (symlink to its PF); a PF has ``virtfn<N>`` symlinks, one per VF, and
  ``sriov_numvfs``. VFs are only ever found through these links: VF addresses depend on the PF's
  offset/stride and on the bus numbering, so computing them is wrong on some hosts;
* ``iommu_group``: symlink to ``/sys/kernel/iommu_groups/<N>``; a group whose ``name`` file reads
  ``vfio-noiommu`` is a no-IOMMU group, its node is ``/dev/vfio/noiommu-<N>``;
* ``numa_node`` (``-1``: unknown), ``local_cpulist`` (``0-15,32-47``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .names import PCI_BUS_ID, PCIE_ROOT, is_standard_bdf, normalize_bdf

DEVICES = "sys/bus/pci/devices"


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _link_name(path: Path) -> str | None:
    """The last component of a symlink's target (``driver`` → ``vfio-pci``), or None."""
    try:
        return os.path.basename(os.readlink(path).rstrip("/"))
    except OSError:
        return None


def _hex(text: str | None) -> str | None:
    """``0x8086`` → ``8086`` (``class`` keeps all six digits: ``020000``)."""
    if not text:
        return None
    return text[2:].lower() if text.lower().startswith("0x") else text.lower()


def pcie_root(host_root: Path | str, bdf: str) -> str | None:
    """The PCIe root complex (``pci0000:16``) of a function, as upstream
    ``deviceattribute.GetPCIeRootAttributeByPCIBusID`` computes it: read the
    ``/sys/bus/pci/devices/<bdf>`` symlink, resolve it lexically against its directory, require it
    to lie under ``/sys/devices/pci`` and to end in ``<bdf>``, and take the first component after
    ``/sys/devices/``. None when any of that fails, or when ``bdf`` is not a 4-digit-domain
    address (upstream refuses those too; no attribute is published then)."""
    if not is_standard_bdf(bdf):
        return None
    sys_dir = Path(host_root) / "sys"
    link = sys_dir / "bus/pci/devices" / bdf
    try:
        target = os.readlink(link)
    except OSError:
        return None
    if os.path.isabs(target):  # a host path: look at it under the host root
        target = str(Path(host_root)) + target
    full = os.path.normpath(os.path.join(str(link.parent), target))
    devices = os.path.normpath(str(sys_dir / "devices"))
    if not full.startswith(devices + os.sep + "pci") or os.path.basename(full) != bdf:
        return None
    return full[len(devices) + 1:].split(os.sep, 1)[0]


@dataclass(frozen=True)
class PciFunction:
    """One PCI function (``bdf`` normalized) under ``host_root``. Every property reads sysfs
    when accessed, so an object is cheap and always current; missing files read as None."""

    host_root: Path
    bdf: str

    @classmethod
    def at(cls, host_root: Path | str, bdf: str) -> "PciFunction":
        """Raises ValueError for a malformed address (the function need not exist)."""
        return cls(Path(host_root), normalize_bdf(bdf))

    @property
    def path(self) -> Path:
        return self.host_root / DEVICES / self.bdf

    def exists(self) -> bool:
        """True while the function's sysfs directory exists (False after hot-unplug)."""
        return self.path.exists()

    def attr(self, name: str) -> str | None:
        """A sysfs attribute file, stripped; None when missing or unreadable."""
        return _read(self.path / name)

    @property
    def vendor(self) -> str | None:
        """``8086`` (four lower-case hex digits, as in pci.ids)."""
        return _hex(self.attr("vendor"))

    @property
    def device(self) -> str | None:
        return _hex(self.attr("device"))

    @property
    def class_code(self) -> str | None:
        """``020000`` (base class, subclass, prog-if)."""
        return _hex(self.attr("class"))

    @property
    def subsystem_vendor(self) -> str | None:
        return _hex(self.attr("subsystem_vendor"))

    @property
    def subsystem_device(self) -> str | None:
        return _hex(self.attr("subsystem_device"))

    @property
    def driver(self) -> str | None:
        """Name of the bound driver (``iavf``, ``vfio-pci``), None when unbound."""
        return _link_name(self.path / "driver")

    @property
    def driver_override(self) -> str | None:
        """The ``driver_override`` value; None when unset (the kernel shows ``(null)``)."""
        v = self.attr("driver_override")
        return None if v in (None, "", "(null)") else v

    @property
    def physfn(self) -> "PciFunction | None":
        """The PF of a VF (from the ``physfn`` symlink), None for anything else."""
        name = _link_name(self.path / "physfn")
        return PciFunction(self.host_root, name) if name else None

    @property
    def is_vf(self) -> bool:
        return (self.path / "physfn").is_symlink()

    def virtfns(self) -> dict[int, "PciFunction"]:
        """VF index → VF, from the ``virtfn<N>`` symlinks of a PF (empty for a non-PF)."""
        out: dict[int, PciFunction] = {}
        try:
            entries = list(os.scandir(self.path))
        except OSError:
            return out
        for e in entries:
            if e.name.startswith("virtfn") and e.name[6:].isdigit():
                name = _link_name(Path(e.path))
                if name:
                    out[int(e.name[6:])] = PciFunction(self.host_root, name)
        return dict(sorted(out.items()))

    @property
    def vf_index(self) -> int | None:
        """N such that the PF's ``virtfn<N>`` points at this VF; None for a non-VF."""
        pf = self.physfn
        if pf is None:
            return None
        return next((i for i, vf in pf.virtfns().items() if vf.bdf == self.bdf), None)

    @property
    def sriov_numvfs(self) -> int | None:
        v = self.attr("sriov_numvfs")
        return int(v) if v and v.isdigit() else None

    @property
    def iommu_group(self) -> int | None:
        name = _link_name(self.path / "iommu_group")
        return int(name) if name and name.isdigit() else None

    @property
    def noiommu(self) -> bool:
        """True when the IOMMU group is a VFIO no-IOMMU group (unsafe mode, no isolation)."""
        return (self.attr("iommu_group/name") or "") == "vfio-noiommu"

    @property
    def vfio_group_path(self) -> str | None:
        """The host's VFIO group node: ``/dev/vfio/<N>``, or ``/dev/vfio/noiommu-<N>``."""
        g = self.iommu_group
        if g is None:
            return None
        return f"/dev/vfio/noiommu-{g}" if self.noiommu else f"/dev/vfio/{g}"

    @property
    def numa_node(self) -> int | None:
        """None when missing or ``-1`` (no NUMA affinity known)."""
        v = self.attr("numa_node")
        try:
            n = int(v) if v is not None else -1
        except ValueError:
            return None
        return n if n >= 0 else None

    @property
    def local_cpulist(self) -> str | None:
        return self.attr("local_cpulist") or None

    @property
    def pcie_root(self) -> str | None:
        return pcie_root(self.host_root, self.bdf)

    def netdevs(self) -> list[str]:
        """Network interfaces of the function (``net/<ifname>``), sorted; empty when none (a VF on
        vfio-pci, or one whose netdev was moved into a pod's namespace)."""
        try:
            return sorted(os.listdir(self.path / "net"))
        except OSError:
            return []

    def standard_attributes(self) -> dict[str, str]:
        """``resource.kubernetes.io/pciBusID`` and ``/pcieRoot``, each only when upstream would
        publish it (both need a 4-digit-domain address; pcieRoot a resolvable root complex)."""
        out: dict[str, str] = {}
        if is_standard_bdf(self.bdf):
            out[PCI_BUS_ID] = self.bdf
        root = self.pcie_root
        if root:
            out[PCIE_ROOT] = root
        return out


def walk(host_root: Path | str, *, vendor: str | None = None, device: str | None = None,
         class_prefix: str | None = None, vfs: bool | None = None) -> Iterator[PciFunction]:
    """PCI functions under ``<host_root>/sys/bus/pci/devices``, sorted by address, filtered by
    ``vendor``/``device`` (hex, with or without ``0x``), ``class_prefix`` (``02`` network,
    ``0200`` Ethernet, ``0302`` 3D controller) and ``vfs`` (True: only VFs, False: no VFs).
    Yields nothing when the directory is missing."""
    root = Path(host_root)
    want_v, want_d = _hex(vendor), _hex(device)
    want_c = _hex(class_prefix)
    try:
        names = sorted(os.listdir(root / DEVICES))
    except OSError:
        return
    for name in names:
        fn = PciFunction(root, name)
        if want_v and fn.vendor != want_v or want_d and fn.device != want_d:
            continue
        if want_c and not (fn.class_code or "").startswith(want_c):
            continue
        if vfs is not None and fn.is_vf != vfs:
            continue
        yield fn
