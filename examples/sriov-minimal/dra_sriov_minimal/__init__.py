"""One DRA device per SR-IOV VF; prepare binds the VF to vfio-pci and hands the container its
VFIO group. Written against the PCI kit (docs/pci.md) as a vendor would; found by its entry point."""
from pydantic import Field
from dra_framework.api import (BaseOptions, ContainerEdits, Device, PciFunction, PreparedDeviceEdits, PrepareResult,
                               bind_driver, char_device_node, hookimpl, pci_device_name, restore_journal,
                               walk_pci, watch_hotplug)

HEX4 = "^[0-9a-f]{4}$"


class Options(BaseOptions):
    vendor: str = Field("8086", pattern=HEX4, description="Vendor id of the VFs (hex, as in pci.ids).")
    device: str = Field("1889", pattern=HEX4, description="Device id of the VFs (8086:1889: Intel E800 series VF).")
    hotplug: bool = Field(True, description="Rediscover on udev PCI events (VFs created or removed).")


class SriovBackend:
    """One device per SR-IOV VF; prepare binds it to vfio-pci."""

    def __init__(self, options: Options, context):
        self.o, self.root = options, context.host_root
        self.hotplug = watch_hotplug(context) if options.hotplug else None

    @hookimpl
    def dra_discover(self, inventory):
        for vf in walk_pci(self.root, vendor=self.o.vendor, device=self.o.device, vfs=True):
            pf = vf.physfn
            attrs = {**vf.standard_attributes(), "vendor": vf.vendor, "deviceID": vf.device, "vfIndex": vf.vf_index,
                     "pfPciAddress": pf.bdf, "pfName": next(iter(pf.netdevs()), "")}
            if vf.numa_node is not None:
                attrs["numaNode"] = vf.numa_node
            inventory.add_device(Device(pci_device_name(vf.bdf, "vf"), attributes=attrs, data={"bdf": vf.bdf}))

    @hookimpl
    async def dra_prepare(self, ctx, devices):
        result = PrepareResult()
        for d in devices:
            bdf = d.device.data["bdf"]
            async with ctx.lock(bdf):
                await bind_driver(ctx, self.root, bdf, "vfio-pci")
            group = PciFunction.at(self.root, bdf).vfio_group_path  # after binding: no-IOMMU groups appear then
            if group is None:
                raise RuntimeError(f"VF {bdf} has no IOMMU group: boot with intel_iommu=on (or amd_iommu=on)")
            nodes = [char_device_node(self.root, p) for p in (group, "/dev/vfio/vfio")]
            env = {f"PCIDEVICE_{d.name.upper().replace('-', '_')}": bdf}
            result.devices[d.name] = PreparedDeviceEdits(ContainerEdits(device_nodes=nodes, env=env))
        return result

    @hookimpl
    async def dra_unprepare(self, stored):
        await restore_journal(self.root, stored.journal, physically_prepared=stored.physically_prepared)

    @hookimpl
    def dra_shutdown(self):
        if self.hotplug:
            self.hotplug.stop()


@hookimpl
def dra_register_backends(register):
    register("sriov-minimal", SriovBackend, options=Options)
