"""Prepare and unprepare of VFs: driver, VF properties through the PF, CDI edits, status.

Every change is journaled with ``ctx.record`` before it is made (docs/backends.md, section 5):

* ``pci.rebind/<bdf>``: driver rebinding, by the kit (docs/pci.md);
* ``sriov.vf/<bdf>``: ``{"pf", "pfBdf", "vf", "original": {mac, vlan, trust, spoofchk}}`` before
  the VF's properties are set through the PF (only the keys being changed);
* ``sriov.mtu/<bdf>``: ``{"ifname", "original"}`` before the VF netdev's MTU is set.

:func:`restore` undoes them from the journal alone (after a restart or a crash half-way), newest
first, keeps going past a failure and raises one error naming every failure at the end. A PF,
VF or netdev that is gone (the pod's namespace holds or deleted the netdev, VFs were removed)
needs nothing and is no error.
"""
from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any, Mapping

from dra_framework.api import (AllocatedDevice, ContainerEdits, DeviceNode, DeviceStatus, NetDevice, NetworkData,
                               PciFunction, PreparedDeviceEdits, RebindError, bind_driver, char_device_node,
                               restore_journal)

from .config import effective
from .discovery import pf_netdev, rdma_info
from .netlink import VF_KEYS, LinkGone, VfNetlink

log = logging.getLogger(__name__)
VF_KEY, MTU_KEY = "sriov.vf/", "sriov.mtu/"


def env_name(device: str, suffix: str = "") -> str:
    """``vf-0000-17-01-0`` → ``SRIOVNIC_VF_0000_17_01_0`` (+ ``_<suffix>``)."""
    return "SRIOVNIC_" + device.upper().replace("-", "_") + (f"_{suffix}" if suffix else "")


async def _wait_netdev(fn: PciFunction, timeout: float) -> str | None:
    deadline = time.monotonic() + timeout
    while True:
        names = fn.netdevs()
        if names or time.monotonic() >= deadline:
            return names[0] if names else None
        await asyncio.sleep(0.05)


class Preparer:
    """Prepares one backend's VFs. ``kernel_driver(vendor_device)`` names a VF's netdev driver."""

    def __init__(self, host_root: Path, netlink: VfNetlink, kernel_drivers: Mapping[str, str],
                 netdev_wait: float = 5.0) -> None:
        self.root, self.nl, self.kernel_drivers, self.netdev_wait = host_root, netlink, kernel_drivers, netdev_wait

    async def prepare_device(self, ctx: Any, d: AllocatedDevice) -> PreparedDeviceEdits:
        bdf = d.device.data["bdf"]
        fn = PciFunction.at(self.root, bdf)
        what = f"device {d.name} (VF {bdf})"
        if not fn.exists():
            raise RuntimeError(f"{what}: the VF is gone from {self.root / 'sys/bus/pci/devices'} (sriov_numvfs changed?)")
        pf = fn.physfn
        if pf is None:
            raise RuntimeError(f"{what}: no physfn link, not a VF any more")
        cfg = effective(d.configs)
        if d.admin_access:  # access to the VF as it is: no rebinding, no property changes
            cfg = {**cfg, "driver": "keep", "mac": None, "vlan": None, "mtu": None, "trust": None, "spoof_chk": None}
        ident = f"{fn.vendor}:{fn.device}"
        target = {"keep": None, "vfio-pci": "vfio-pci", "default": self.kernel_drivers.get(ident)}[cfg["driver"]]
        if cfg["driver"] == "default" and target is None:
            raise ValueError(f"{what}: driver: default, but no kernel driver is known for VF id {ident} "
                             "(add it to the backend option kernelDrivers)")
        if target is not None:
            await bind_driver(ctx, self.root, bdf, target)
        driver = fn.driver
        if driver is None:
            raise RebindError(f"{what}: bound to no driver; refusing to hand it out")
        vfio = driver == "vfio-pci"
        if vfio and (cfg["mtu"] is not None):
            raise ValueError(f"{what}: mtu needs the VF's kernel netdev, but it is on vfio-pci")
        pf_name = pf_netdev(pf)
        index = fn.vf_index
        changes = {k: cfg[c] for k, c in (("mac", "mac"), ("vlan", "vlan"), ("trust", "trust"), ("spoofchk", "spoof_chk"))
                   if cfg[c] is not None}
        state: dict[str, Any] = {}
        if pf_name and index is not None:
            try:
                state = self.nl.vf_state(pf_name, index)
            except LinkGone:
                state = {}
        if changes:
            if not pf_name or index is None:
                raise RuntimeError(f"{what}: mac/vlan/trust/spoofChk are set through the PF, but PF {pf.bdf} "
                                   "has no netdev in this network namespace")
            key = VF_KEY + bdf
            prior = ctx.journal.get(key)
            original = dict(prior["original"]) if isinstance(prior, Mapping) else {}
            for k in changes:
                original.setdefault(k, state.get(k))
            await ctx.record(key, {"pf": pf_name, "pfBdf": pf.bdf, "vf": index, "original": original})
            self.nl.set_vf(pf_name, index, changes)
            state = {**state, **changes}

        edits: dict[str, Any] = {"env": {env_name(d.name): bdf}, "device_nodes": [], "net_devices": []}
        status: dict[str, Any] = {"pciAddress": bdf, "pfName": pf_name or "", "vfID": index, "driver": driver,
                                  "mode": "vfio-pci" if vfio else "netdev"}
        network: NetworkData | None = None
        if vfio:
            group = fn.vfio_group_path
            if group is None:
                raise RuntimeError(f"{what}: no IOMMU group; boot with intel_iommu=on / amd_iommu=on or enable "
                                   "vfio no-IOMMU mode")
            edits["device_nodes"] += [char_device_node(self.root, group), char_device_node(self.root, "/dev/vfio/vfio")]
            edits["env"][env_name(d.name, "VFIO")] = group
            status["vfioDevice"] = group
        else:
            host_if = await _wait_netdev(fn, self.netdev_wait)
            if host_if is None:
                raise RuntimeError(f"{what}: driver {driver} but no network interface under {fn.path / 'net'} "
                                   "(in another network namespace, or still probing)")
            if cfg["mtu"] is not None:
                key = MTU_KEY + bdf
                prior = ctx.journal.get(key)
                orig = prior["original"] if isinstance(prior, Mapping) else self.nl.mtu(host_if)
                await ctx.record(key, {"ifname": host_if, "original": orig})
                self.nl.set_mtu(host_if, cfg["mtu"])
            # default: the host's name, unique on the node, so VFs of several claims never clash in one pod
            if_name = cfg["if_name"] or host_if
            edits["net_devices"].append(NetDevice(host_interface_name=host_if, name=if_name))
            status.update(ifName=if_name, hostInterfaceName=host_if)
            mac = state.get("mac") if state.get("mac") not in (None, "00:00:00:00:00:00") else \
                fn.attr(f"net/{host_if}/address")  # no administrative MAC: the one the VF uses
            network = NetworkData(interface_name=if_name, hardware_address=mac or "")
        rdma_dev, chars = rdma_info(fn)
        want_rdma = cfg["rdma"] if cfg["rdma"] is not None else rdma_dev is not None
        if want_rdma:
            if rdma_dev is None:
                raise ValueError(f"{what}: rdma: true, but the VF has no RDMA device")
            nodes = [*chars, "/dev/infiniband/rdma_cm"]
            edits["device_nodes"] += [char_device_node(self.root, p) for p in nodes]
            edits["env"][env_name(d.name, "RDMA_DEVICE")] = rdma_dev
            status["rdmaDevice"] = rdma_dev
        if cfg["vhost"]:
            edits["device_nodes"] += [char_device_node(self.root, "/dev/vhost-net"),
                                      char_device_node(self.root, "/dev/net/tun")]
        status.update({k: state[k] for k in VF_KEYS if k in state})
        if cfg["mtu"] is not None:
            status["mtu"] = cfg["mtu"]
        status["vhost"] = bool(cfg["vhost"])
        dev_nodes: list[DeviceNode] = edits["device_nodes"]
        return PreparedDeviceEdits(ContainerEdits(env=edits["env"], device_nodes=tuple(dev_nodes),
                                                  net_devices=tuple(edits["net_devices"])),
                                   status=DeviceStatus(data=status, network_data=network))

    async def restore(self, journal: Mapping[str, Any], physically_prepared: bool) -> None:
        """Undo a claim's changes from its journal (module doc)."""
        if not physically_prepared:
            return
        errors: list[str] = []
        for key in reversed(list(journal)):
            entry = journal[key]
            try:
                if key.startswith(VF_KEY):
                    self._restore_vf(key[len(VF_KEY):], entry)
                elif key.startswith(MTU_KEY):
                    self._restore_mtu(key[len(MTU_KEY):], entry)
            except (OSError, LinkGone, KeyError, ValueError, TypeError) as exc:
                errors.append(f"{key}: {exc}")
        try:
            await restore_journal(self.root, journal)
        except RebindError as exc:
            errors.append(str(exc))
        if errors:
            raise RuntimeError("restoring VFs: " + "; ".join(errors))

    def _restore_vf(self, bdf: str, entry: Mapping[str, Any]) -> None:
        pf = PciFunction.at(self.root, entry["pfBdf"])
        vf = PciFunction.at(self.root, bdf)
        if not pf.exists() or not vf.exists() or vf.physfn is None:
            log.info("VF %s or its PF is gone; nothing to restore", bdf)
            return
        name = pf_netdev(pf) or entry["pf"]  # the PF may have been renamed since
        original = {k: v for k, v in entry["original"].items() if v is not None}
        try:
            if original:
                self.nl.set_vf(name, int(entry["vf"]), original)
        except LinkGone as exc:
            log.info("VF %s: %s; nothing to restore", bdf, exc)

    def _restore_mtu(self, bdf: str, entry: Mapping[str, Any]) -> None:
        names = PciFunction.at(self.root, bdf).netdevs()
        if not names:  # in a pod's namespace still, or gone with it: nothing to reach
            log.info("VF %s has no netdev in this namespace; MTU not restored", bdf)
            return
        try:
            if self.nl.mtu(names[0]) != int(entry["original"]):
                self.nl.set_mtu(names[0], int(entry["original"]))
        except LinkGone:
            pass
