"""The ``sriov_nic`` backend: hooks (docs/backends.md) over discovery, prepare and PF link health."""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable

from dra_framework.api import (BackendContext, Device, Health, HealthReport, Inventory, PciFunction, PrepareResult,
                               Taint, TaintEffect, hookimpl, pci_device_name, watch_hotplug)

from .config import VfConfig
from .discovery import Vf, scan, selected
from .netlink import VfNetlink, make_netlink
from .options import SriovNicOptions
from .prepare import Preparer

log = logging.getLogger(__name__)


class SriovNicBackend:
    """One device per selected VF. ``netlink`` and ``udev_source`` replace the kernel in tests."""

    def __init__(self, options: SriovNicOptions, context: BackendContext, *, netlink: VfNetlink | None = None,
                 udev_source: Any = None) -> None:
        self.o, self.ctx, self.root = options, context, context.host_root
        self.log = context.logger or log
        self.netlink = netlink if netlink is not None else make_netlink(options.netlink, self.root)
        self.preparer = Preparer(self.root, self.netlink, options.kernel_drivers, options.netdev_wait)
        self.vfs: dict[str, Vf] = {}  # device name -> VF, as last discovered
        self._logged: set[tuple[str, str]] = set()
        self.hotplug = None
        if options.hotplug:
            kwargs: dict[str, Any] = {"subsystems": ("pci", "net")}
            if udev_source is not None:
                kwargs["source"] = udev_source
            self.hotplug = watch_hotplug(context, **kwargs)

    def _once(self, bdf: str, reason: str, verb: str = "skipped") -> None:
        if (bdf, reason) not in self._logged:
            self._logged.add((bdf, reason))
            self.log.info("PCI function %s %s: %s", bdf, verb, reason)

    def _taints(self, vf: Vf) -> list[Taint]:
        """A VF bound to no driver, or to one that is neither vfio-pci nor its kernel driver, is
        not handed out: someone else uses it (or a rebinding was interrupted)."""
        expected = {"vfio-pci", self.o.kernel_drivers.get(vf.ident, vf.driver)}
        if vf.driver in expected and vf.driver is not None:
            return []
        value = "no-driver" if vf.driver is None else f"bound-to-{vf.driver}"[:63]
        return [Taint(f"{self.ctx.driver_name}/unexpected-binding", value, TaintEffect.NO_SCHEDULE)]

    @hookimpl
    def dra_discover(self, inventory: Inventory) -> None:
        vfs, skipped = scan(self.root)
        for bdf, reason in skipped:
            self._once(bdf, reason)
        found: dict[str, Vf] = {}
        for vf in vfs:
            if not any(selected(vf, s) for s in self.o.selectors):
                self._once(vf.bdf, "VF not matched by options.selectors")
                continue
            name = pci_device_name(vf.bdf, "vf")
            taints = self._taints(vf)
            if taints:
                self._once(vf.bdf, f"{taints[0].key}={taints[0].value}:NoSchedule (driver {vf.driver or 'none'}, "
                           "expected vfio-pci or its kernel driver)", verb="tainted")
            inventory.add_device(Device(name, attributes=dict(vf.attrs), taints=taints,
                                        data={"bdf": vf.bdf, "pf": vf.pf_bdf}))
            found[name] = vf
        if not found:
            self.log.warning("sriov_nic: no VF selected under %s (%d VFs found): set options.selectors "
                             "(vendors, devices, drivers, pfNames, pciAddresses, linkTypes, rdma)", self.root, len(vfs))
        self.vfs = found

    @hookimpl
    def dra_config_types(self) -> list[type]:
        return [VfConfig]

    @hookimpl
    async def dra_prepare(self, ctx: Any, devices: list[Any]) -> PrepareResult:
        result = PrepareResult(teardown={"vfs": [d.device.data["bdf"] for d in devices]})
        for d in devices:
            async with ctx.lock(d.device.data["bdf"]):
                result.devices[d.name] = await self.preparer.prepare_device(ctx, d)
        return result

    @hookimpl
    async def dra_unprepare(self, stored: Any) -> None:
        await self.preparer.restore(stored.journal, stored.physically_prepared)

    def link_reports(self) -> list[HealthReport]:
        """PF link down taints every VF of that PF (NoSchedule); up (or unknown) clears it."""
        out = []
        for name, vf in sorted(self.vfs.items()):
            pf = PciFunction.at(self.root, vf.pf_bdf)
            state = pf.attr(f"net/{vf.pf_name}/operstate") if vf.pf_name else None
            if state == "down":
                out.append(HealthReport(name, Health.UNHEALTHY, message=f"PF {vf.pf_name} ({vf.pf_bdf}) link is down",
                                        taints=[Taint(f"{self.ctx.driver_name}/pf-link-down", vf.pf_name or "",
                                                      TaintEffect.NO_SCHEDULE)]))
            else:
                out.append(HealthReport(name, Health.HEALTHY, taints=[]))
        return out

    @hookimpl
    async def dra_watch_health(self, report: Callable[[HealthReport], None]) -> None:
        last: dict[str, tuple[Health, str]] = {}
        while True:
            for r in self.link_reports():
                key = (r.health, r.message)
                if last.get(r.device) != key:
                    last[r.device] = key
                    if r.health is Health.UNHEALTHY:
                        self.log.warning("device %s: %s", r.device, r.message)
                    report(r)
            await asyncio.sleep(self.o.health_interval)

    @hookimpl
    def dra_shutdown(self) -> None:
        if self.hotplug is not None:
            self.hotplug.stop()
