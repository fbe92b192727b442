"""PCI sysfs walk, attributes, standard attributes and names on the E810 sample host."""
import os

import pytest

from dra_framework.pci import (PCI_BUS_ID, PCIE_ROOT, PciFunction, device_name, is_standard_bdf,
                               normalize_bdf, parse_device_name, pcie_root, walk)
from dra_framework.testing.hosttree import HostTree


def test_walk_filters_by_vendor_device_class_and_vf(e810):
    assert [f.bdf for f in walk(e810, vendor="8086", device="0x1889")] == [
        "0000:17:01.0", "0000:17:01.1", "0000:17:01.2", "0000:17:01.3"]
    assert [f.bdf for f in walk(e810, class_prefix="02", vfs=False)] == ["0000:17:00.0", "0000:17:00.1"]
    assert [f.bdf for f in walk(e810, class_prefix="0604")] == ["0000:16:01.0"]
    assert list(walk(e810 / "missing")) == []


def test_function_attributes(e810):
    vf = PciFunction.at(e810, "0000:17:01.3")
    assert (vf.vendor, vf.device, vf.class_code) == ("8086", "1889", "020000")
    assert vf.driver == "vfio-pci" and vf.driver_override is None
    assert vf.is_vf and vf.physfn.bdf == "0000:17:00.0" and vf.vf_index == 3
    assert vf.iommu_group == 20 and not vf.noiommu and vf.vfio_group_path == "/dev/vfio/20"
    assert vf.numa_node == 0 and vf.local_cpulist.startswith("0,2,4,")
    assert vf.netdevs() == []
    pf = PciFunction.at(e810, "0000:17:00.0")
    assert not pf.is_vf and pf.physfn is None and pf.vf_index is None
    assert {i: f.bdf for i, f in pf.virtfns().items()} == {
        0: "0000:17:01.0", 1: "0000:17:01.1", 2: "0000:17:01.2", 3: "0000:17:01.3"}
    assert pf.sriov_numvfs == 4 and pf.driver == "ice" and pf.netdevs() == ["enp23s0f0"]
    assert (pf.subsystem_vendor, pf.subsystem_device) == ("8086", "0002")
    assert PciFunction.at(e810, "0000:17:00.1").virtfns() == {}


def test_vfs_come_from_virtfn_links_not_from_arithmetic(tmp_path):
    """A PF whose VFs sit on another bus (offset/stride past the bus end): only the links tell."""
    t = HostTree(tmp_path)
    t.pci_function("0000:3b:00.0", parent="pci0000:3a/0000:3a:00.0", vendor="8086", device="159b",
                   class_code="020000", driver="ice")
    t.pci_function("0000:3c:02.5", parent="pci0000:3a/0000:3a:00.0", vendor="8086", device="1889",
                   class_code="020000", driver="iavf")
    t.sriov("0000:3b:00.0", ["0000:3c:02.5"])
    vf = PciFunction.at(tmp_path, "0000:3c:02.5")
    assert vf.physfn.bdf == "0000:3b:00.0" and vf.vf_index == 0


def test_noiommu_group(tmp_path):
    t = HostTree(tmp_path)
    t.pci_function("0000:17:01.0", parent="pci0000:16/0000:16:01.0", vendor="8086", device="1889",
                   class_code="020000", driver="vfio-pci")
    t.iommu_group(3, ["0000:17:01.0"], noiommu=True)
    fn = PciFunction.at(tmp_path, "0000:17:01.0")
    assert fn.noiommu and fn.vfio_group_path == "/dev/vfio/noiommu-3"


def test_numa_unknown_and_missing(tmp_path):
    t = HostTree(tmp_path)
    t.pci_function("0000:00:04.0", parent="pci0000:00", vendor="1ae0", device="0063", class_code="ff0000")
    fn = PciFunction.at(tmp_path, "0000:00:04.0")
    assert fn.numa_node is None and fn.local_cpulist is None and fn.driver is None and fn.iommu_group is None
    assert PciFunction.at(tmp_path, "0000:00:05.0").numa_node is None


def test_pcie_root_follows_upstream_deviceattribute(e810, tmp_path):
    """Upstream: first component after /sys/devices/ of the resolved bus symlink, which must lie
    under /sys/devices/pci and end in the address; otherwise no attribute."""
    assert pcie_root(e810, "0000:17:01.0") == "pci0000:16"
    assert pcie_root(e810, "0000:16:01.0") == "pci0000:16"
    assert pcie_root(e810, "0000:99:00.0") is None
    t = HostTree(tmp_path)
    t.symlink("sys/bus/pci/devices/0000:01:00.0", "../../../devices/platform/soc/0000:01:00.0")
    t.symlink("sys/bus/pci/devices/0000:02:00.0", "../../../devices/pci0000:00/0000:02:00.1")
    t.symlink("sys/bus/pci/devices/0000:03:00.0", "/sys/devices/pci0000:02/0000:02:01.0/0000:03:00.0")
    assert pcie_root(tmp_path, "0000:01:00.0") is None  # not under /sys/devices/pci
    assert pcie_root(tmp_path, "0000:02:00.0") is None  # does not end in the address
    assert pcie_root(tmp_path, "0000:03:00.0") == "pci0000:02"  # absolute: a host path


def test_standard_attributes(e810):
    assert PciFunction.at(e810, "0000:17:01.2").standard_attributes() == {
        PCI_BUS_ID: "0000:17:01.2", PCIE_ROOT: "pci0000:16"}
    assert PCI_BUS_ID == "resource.kubernetes.io/pciBusID" and PCIE_ROOT == "resource.kubernetes.io/pcieRoot"


def test_standard_attributes_leave_out_what_upstream_refuses(tmp_path):
    t = HostTree(tmp_path)
    t.pci_function("10000:e1:00.0", parent="pci10000:e0/10000:e0:01.0", vendor="144d", device="a80a",
                   class_code="010802")
    assert PciFunction.at(tmp_path, "10000:e1:00.0").standard_attributes() == {}
    assert pcie_root(tmp_path, "10000:e1:00.0") is None


@pytest.mark.parametrize("raw,want", [("0000:3B:01.0", "0000:3b:01.0"), ("00000000:1B:00.0", "0000:1b:00.0"),
                                      ("3b:01.7", "0000:3b:01.7"), ("10006:0a:00.0", "10006:0a:00.0")])
def test_normalize_bdf(raw, want):
    assert normalize_bdf(raw) == want


@pytest.mark.parametrize("bad", ["", "0000:3b:01", "0000:3b:01.8", "zz:00.0", "0000:3b:01.0\n0"])
def test_normalize_bdf_refuses(bad):
    with pytest.raises(ValueError, match="not a PCI address"):
        normalize_bdf(bad)


def test_names_round_trip():
    assert device_name("0000:17:01.3", "vf") == "vf-0000-17-01-3"
    assert parse_device_name("vf-0000-17-01-3", "vf") == "0000:17:01.3"
    assert device_name("3B:00.0") == "pci-0000-3b-00-0"
    assert parse_device_name("gpu-0000-1b-00-0", "vf") is None
    assert is_standard_bdf("0000:17:01.3") and not is_standard_bdf("10006:0a:00.0")
    with pytest.raises(ValueError, match="DNS label"):
        device_name("0000:17:01.3", "Bad_Prefix")


def test_bus_symlinks_are_relative_like_the_kernel(e810):
    link = e810 / "sys/bus/pci/devices/0000:17:01.3"
    assert os.readlink(link) == "../../../devices/pci0000:16/0000:16:01.0/0000:17:01.3"
    assert os.readlink(link.resolve() / "driver") == "../../../../bus/pci/drivers/vfio-pci"
    assert os.readlink(link.resolve() / "physfn") == "../0000:17:00.0"
