"""VFIO passthrough (``passthrough: true``): a GPU offered whole to a VM (KubeVirt-style users).

Discovery: every NVIDIA display/3D controller in ``<hostRoot>/sys/bus/pci/devices`` (vendor
10de, class 03xx) becomes a ``vfio`` device ``vfio-<domain>-<bus>-<dev>-<fn>``, except GPUs with
MIG enabled, addresses in ``passthroughExclude`` and GPUs the admin pinned to another driver
(``driver_override`` set to anything but ``vfio-pci``). sysfs, not NVML: a GPU bound to
vfio-pci is invisible to NVML. The GPU and its vfio sibling consume the counter ``gpu`` of
one counter set ``<gpu name>-counters`` (value 1), so the scheduler never hands out both.

Prepare: refused while the GPU is used otherwise (another claim prepared it, it has MIG
instances) or pinned; then ``bind_driver(ctx, ..., "vfio-pci")`` of the backend kit journals
``pci.rebind/<bdf>`` before each sysfs write (docs/pci.md), and the CDI edits are
``/dev/vfio/<group>`` and ``/dev/vfio/vfio``. Unprepare and rollback restore the original driver
from the journal alone (``restore_journal``); a rediscovery follows both, since the NVIDIA
device disappears from NVML while the GPU is on vfio-pci and comes back afterwards.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from dra_framework.api import (PCI_BUS_ID, PCIE_ROOT, ContainerEdits, CounterConsumption, CounterSet, Device,
                               PciFunction, char_device_node, normalize_bdf, pci_device_name, walk_pci)

from . import naming

NVIDIA_VENDOR = "10de"
VFIO_DRIVER = "vfio-pci"
COUNTER = "gpu"


def vfio_name(bdf: str) -> str:
    return pci_device_name(bdf, "vfio")


def gpu_functions(host_root: Path) -> list[PciFunction]:
    """NVIDIA display (0300) and 3D (0302) controllers."""
    return [fn for fn in walk_pci(host_root, vendor=NVIDIA_VENDOR, class_prefix="03")
            if (fn.class_code or "")[:4] in ("0300", "0302")]


def pinned(fn: PciFunction) -> str | None:
    """Why the admin keeps this GPU off vfio-pci, or None: a ``driver_override`` naming another driver."""
    ov = fn.driver_override
    if ov is not None and ov != VFIO_DRIVER:
        return f"driver_override is {ov!r} (pinned by the admin)"
    return None


def discover(host_root: Path, exclude: Iterable[str], mig_enabled: set[str],
             nvml_names: dict[str, dict[str, Any]]) -> tuple[list[Device], list[CounterSet]]:
    """vfio devices and the per-GPU counter sets. ``mig_enabled``: bus ids with MIG on;
    ``nvml_names``: bus id → NVML facts (``uuid``, ``productName``) for GPUs NVML sees."""
    skip = {normalize_bdf(b) for b in exclude}
    devices, sets = [], []
    for fn in gpu_functions(host_root):
        if fn.bdf in skip or fn.bdf in mig_enabled or pinned(fn):
            continue
        cs = naming.counter_set_name(fn.bdf)
        sets.append(CounterSet(cs, {COUNTER: 1}))
        attrs: dict[str, Any] = {"type": "vfio", "vendorID": fn.vendor or "", "deviceID": fn.device or "",
                                 **fn.standard_attributes()}
        facts = nvml_names.get(fn.bdf, {})
        for k in ("uuid", "productName"):
            if facts.get(k):
                attrs[k] = facts[k]
        if fn.numa_node is not None:
            attrs["resource.kubernetes.io/numaNode"] = fn.numa_node
        if fn.iommu_group is not None:
            attrs["iommuGroup"] = fn.iommu_group
        devices.append(Device(vfio_name(fn.bdf), attributes=attrs,
                              consumes_counters=[CounterConsumption(cs, {COUNTER: 1})],
                              data={"kind": "vfio", "bus": fn.bdf, "gpu": naming.gpu_name(fn.bdf)}))
    return devices, sets


def cdi_edits(host_root: Path, bdf: str) -> ContainerEdits:
    """``/dev/vfio/<group>`` (``noiommu-<group>`` in no-IOMMU mode) and ``/dev/vfio/vfio``."""
    fn = PciFunction.at(host_root, bdf)
    group = fn.vfio_group_path
    if group is None:
        raise RuntimeError(f"PCI device {bdf} has no IOMMU group (enable the IOMMU: intel_iommu=on / amd_iommu=on)")
    # the group node's minor is handed out at bind time: read it from the node, never guess
    nodes = [char_device_node(host_root, group),
             char_device_node(host_root, "/dev/vfio/vfio", major_name="misc", minor=196)]
    return ContainerEdits(device_nodes=tuple(nodes))


__all__ = ["COUNTER", "PCI_BUS_ID", "PCIE_ROOT", "VFIO_DRIVER", "cdi_edits", "discover", "gpu_functions", "pinned",
           "vfio_name"]
