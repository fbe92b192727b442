"""Writes the FPGA sample hosts (see each host's README for where every value comes from):
``python examples/hosts/fpga_hosts.py examples/hosts`` writes ``fpga-d5005``, ``fpga-n3000`` and
``fpga-u250`` there.

* ``fpga-d5005``: an Intel FPGA PAC D5005 with the Open FPGA Stack FIM (8086:bcce, subsystem
  138d) at 0000:3b:00.0, SR-IOV on, three VF ports; the second holds ``host_chan_mmio``.
* ``fpga-n3000``: an Intel FPGA PAC N3000 (8086:0b30) behind the card's PCIe switch, with its
  four XXV710 Ethernet functions (left to a NIC backend) and its FEC function.
* ``fpga-u250``: an AMD Alveo U250 (management PF 10ee:5004, user PF 10ee:5005), no xclbin loaded.

Images under ``srv/`` are synthetic (``backends/fpga/fake/images.py``): real ids, no bitstream.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from dra_framework.testing.hosttree import HostTree

from dra_backends.fpga.fake.images import make_gbs, make_xclbin  # noqa: E402

#: Dynamic char majors (``/proc/devices``); any free number does, real hosts differ.
DFL_PORT_MAJOR, DFL_FME_MAJOR, XCLMGMT_MAJOR, DRM_MAJOR, VFIO_MAJOR = 235, 236, 237, 226, 243

D5005_IFACE = "d51533adaee65dab80fba44bbf579b68"
D5005_AFUS = {"he-lb": "56e203e9864f49a7b94b12284c31e02b", "host_chan_mmio": "76d7ae9cf66b461f816a5428bcebdbc5",
              "null": "d15ab1ed000000000210000000000000", "hello_world": "c6aa954a9b914a37abc11d9f0709dcc3"}
#: The D5005 *PAC* FIM's interface and NLB3 (Intel FPGA device plugin mappings): a wrong-FIM image.
PAC_D5005_IFACE, NLB3 = "bfac4d851ee856fe8c95865ce1bbaa2d", "f7df405cbd7acf7222f144b0b93acd18"
N3000_IFACE, NLB0 = "f3c9941350814aadbced07eb84a6d0bb", "d8424dc4a4a3c413f89e433683f9040b"
U250_IFACE, U250_LOGIC = "695718ec21a232e45e1afcb4e558e11f", "bd5fb8abab266c3265918257b5048e88"
U250_VBNV = "xilinx_u250_gen3x16_xdma_shell_3_1"
U250_VADD = "5909daafbf72a01eba62a15e29b6274b"


def _dfl_common(t: HostTree) -> None:
    t.pci_driver("dfl-pci", module="dfl_pci")
    t.proc_devices([(DFL_PORT_MAJOR, "dfl-port"), (DFL_FME_MAJOR, "dfl-fme"), (DRM_MAJOR, "drm")])


def _region(t: HostTree, bdf: str, n: int) -> Path:
    dev = t.device_dir(bdf).relative_to(t.root)
    region = dev / "fpga_region" / f"region{n}"
    t.dir(region)
    t.rel_symlink(f"sys/class/fpga_region/region{n}", region)
    return region


def dfl_fme(t: HostTree, bdf: str, region: int, fme: int, *, bitstream_id: str, interface_id: str, ports: int,
            socket: int = 0) -> None:
    r = _region(t, bdf, region)
    d = r / f"dfl-fme.{fme}"
    for name, value in (("dev", f"{DFL_FME_MAJOR}:{fme}"), ("bitstream_id", bitstream_id),
                        ("bitstream_metadata", "0x0"), ("ports_num", str(ports)), ("socket_id", str(socket)),
                        ("errors/fme_errors", "0x0"), ("errors/first_error", "0x0"), ("errors/next_error", "0x0")):
        t.file(d / name, value + "\n")
    pr = d / f"dfl-fme-region.{fme}" / "fpga_region" / f"region{region + 1}"
    t.file(pr / "compat_id", interface_id + "\n")
    t.rel_symlink(f"sys/class/fpga_region/region{region + 1}", pr)
    t.rel_symlink(f"sys/bus/platform/devices/dfl-fme.{fme}", d)
    t.char_device(f"dev/dfl-fme.{fme}", DFL_FME_MAJOR, fme)


def dfl_port(t: HostTree, bdf: str, region: int, port: int, *, port_id: int, afu_id: str) -> None:
    r = _region(t, bdf, region)
    d = r / f"dfl-port.{port}"
    for name, value in (("dev", f"{DFL_PORT_MAJOR}:{port}"), ("id", str(port_id)), ("afu_id", afu_id),
                        ("power_state", "0"), ("errors/errors", "0x0"), ("errors/first_error", "0x0"),
                        ("errors/first_malformed_req", "0x0")):
        t.file(d / name, value + "\n")
    t.rel_symlink(f"sys/bus/platform/devices/dfl-port.{port}", d)
    t.char_device(f"dev/dfl-port.{port}", DFL_PORT_MAJOR, port)


def build_d5005(root: str | Path) -> Path:
    t = HostTree(root)
    _dfl_common(t)
    cpus = ",".join(str(c) for c in range(0, 40, 2))
    t.pci_function("0000:3a:00.0", parent="pci0000:3a", vendor="8086", device="2030", class_code="060400",
                   driver="pcieport", numa_node=0, local_cpulist=cpus)
    common = dict(parent="pci0000:3a/0000:3a:00.0", vendor="8086", class_code="120000", subsystem_vendor="8086",
                  subsystem_device="138d", driver="dfl-pci", numa_node=0, local_cpulist=cpus)
    pf, vfs = "0000:3b:00.0", ["0000:3b:00.1", "0000:3b:00.2", "0000:3b:00.3"]
    t.pci_function(pf, device="bcce", attrs={"sriov_totalvfs": "3\n"}, **common)  # type: ignore[arg-type]
    for vf in vfs:
        t.pci_function(vf, device="bccf", **common)  # type: ignore[arg-type]
    t.sriov(pf, vfs)
    dfl_fme(t, pf, 0, 0, bitstream_id="0x401000287428628", interface_id=D5005_IFACE, ports=3)
    for i, (vf, afu) in enumerate(zip(vfs, ("he-lb", "host_chan_mmio", "null"), strict=True)):
        dfl_port(t, vf, 2 + i, i, port_id=i, afu_id=D5005_AFUS[afu])
    base = f"srv/intel.com/fpga/{D5005_IFACE}"
    for name in ("host_chan_mmio", "hello_world", "he-lb"):
        t.path(base).mkdir(parents=True, exist_ok=True)
        t.path(f"{base}/{D5005_AFUS[name]}.gbs").write_bytes(make_gbs(D5005_IFACE, D5005_AFUS[name], name))
    t.path(f"srv/intel.com/fpga/{PAC_D5005_IFACE}").mkdir(parents=True, exist_ok=True)
    t.path(f"srv/intel.com/fpga/{PAC_D5005_IFACE}/{NLB3}.gbs").write_bytes(make_gbs(PAC_D5005_IFACE, NLB3, "nlb3"))
    return t.root


def build_n3000(root: str | Path) -> Path:
    t = HostTree(root)
    _dfl_common(t)
    t.proc_devices([(10, "misc"), (DFL_PORT_MAJOR, "dfl-port"), (DFL_FME_MAJOR, "dfl-fme"), (VFIO_MAJOR, "vfio")])
    t.pci_driver("i40e")
    t.pci_driver("pci-pf-stub")
    cpus = ",".join(str(c) for c in range(0, 48, 2))
    t.pci_function("0000:17:00.0", parent="pci0000:17", vendor="8086", device="2030", class_code="060400",
                   driver="pcieport", numa_node=0, local_cpulist=cpus)
    parent = "pci0000:17/0000:17:00.0/0000:18:00.0"
    nics = {"0000:19:00.0": ("ens785f0", "64:4c:36:11:1b:a8"), "0000:19:00.1": ("ens785f1", "64:4c:36:11:1b:a9"),
            "0000:1d:00.0": ("ens787f0", "64:4c:36:11:1b:ac"), "0000:1d:00.1": ("ens787f1", "64:4c:36:11:1b:ad")}
    for group, (bdf, (ifname, mac)) in enumerate(nics.items(), start=30):
        t.pci_function(bdf, parent=parent, vendor="8086", device="0d58", class_code="020000", subsystem_vendor="8086",
                       subsystem_device="0001", driver="i40e", numa_node=0, local_cpulist=cpus, iommu_group=group,
                       attrs={"sriov_totalvfs": "64\n", "sriov_numvfs": "0\n"})
        t.netdev(bdf, ifname, address=mac, operstate="up", type="1", carrier="1", speed="25000", mtu="1500")
    # two VFs on the first port (what `echo 2 > sriov_numvfs` gives): for a NIC backend
    vfs = ["0000:19:02.0", "0000:19:02.1"]
    for i, vf in enumerate(vfs):
        t.pci_function(vf, parent=parent, vendor="8086", device="154c", class_code="020000", driver="iavf",
                       native_driver="iavf", numa_node=0, local_cpulist=cpus, iommu_group=40 + i)
        t.netdev(vf, f"ens785f0v{i}", type="1", operstate="up", mtu="1500", address=f"5a:8e:0c:2d:61:{i:02x}")
    t.sriov("0000:19:00.0", vfs)
    t.pci_driver("vfio-pci", module="vfio_pci")
    t.char_device("dev/vfio/vfio", 10, 196)  # VFIO_MINOR in include/linux/miscdevice.h
    vf_state = {str(i): {"mac": "00:00:00:00:00:00", "vlan": 0, "spoofchk": True, "trust": False} for i in range(2)}
    t.file("fake-netlink.json", json.dumps({"vfs": {"ens785f0": vf_state}}, indent=2, sort_keys=True) + "\n")
    t.pci_function("0000:1b:00.0", parent=parent, vendor="8086", device="0b30", class_code="120000",
                   subsystem_vendor="8086", subsystem_device="0000", driver="dfl-pci", numa_node=0, local_cpulist=cpus)
    dfl_fme(t, "0000:1b:00.0", 0, 0, bitstream_id="0x2300011001030f", interface_id=N3000_IFACE, ports=1)
    dfl_port(t, "0000:1b:00.0", 0, 0, port_id=0, afu_id=NLB0)
    t.pci_function("0000:1f:00.0", parent=parent, vendor="8086", device="0d8f", class_code="120000",
                   subsystem_vendor="8086", subsystem_device="0001", driver="pci-pf-stub", numa_node=0, local_cpulist=cpus)
    base = f"srv/intel.com/fpga/{N3000_IFACE}"
    t.path(base).mkdir(parents=True, exist_ok=True)
    for afu, name in ((NLB0, "nlb0"), (NLB3, "nlb3")):
        t.path(f"{base}/{afu}.gbs").write_bytes(make_gbs(N3000_IFACE, afu, name))
    return t.root


def build_u250(root: str | Path) -> Path:
    t = HostTree(root)
    t.pci_driver("xclmgmt")
    t.pci_driver("xocl")
    t.proc_devices([(DRM_MAJOR, "drm"), (XCLMGMT_MAJOR, "xclmgmt")])
    parent = "pci0000:00/0000:00:15.0"
    mgmt, user = "0000:04:00.0", "0000:04:00.1"
    t.pci_function(mgmt, parent=parent, vendor="10ee", device="5004", class_code="120000", subsystem_vendor="10ee",
                   subsystem_device="000e", driver="xclmgmt", numa_node=0, iommu_group=11,
                   attrs={"mgmt_pf": "", "instance": "1024\n", "ready": "0x1\n"})
    t.pci_function(user, parent=parent, vendor="10ee", device="5005", class_code="120000", subsystem_vendor="10ee",
                   subsystem_device="000e", driver="xocl", numa_node=0,
                   attrs={"user_pf": "", "ready": "0x1\n", "interface_uuids": U250_IFACE + "\n",
                          "logic_uuids": U250_LOGIC + "\n", "xclbinuuid": "00000000-0000-0000-0000-000000000000\n",
                          "rom.u.1025/VBNV": U250_VBNV + "\n", "rom.u.1025/FPGA": "xcu250-figd2104-2L-e\n",
                          "xmc.u.1025/serial_num": "XFL1P0345SA0\n", "drm/renderD129/dev": f"{DRM_MAJOR}:129\n",
                          "drm/card1/dev": f"{DRM_MAJOR}:1\n"})
    t.iommu_group(11, [mgmt, user])
    t.file(t.device_dir(mgmt).relative_to(t.root) / "xrt_mgmt/xclmgmt1024/dev", f"{XCLMGMT_MAJOR}:0\n")
    t.char_device("dev/xclmgmt1024", XCLMGMT_MAJOR, 0)
    t.char_device("dev/dri/renderD129", DRM_MAJOR, 129)
    base = "opt/xilinx/firmware/xclbins"
    t.path(base).mkdir(parents=True, exist_ok=True)
    t.path(f"{base}/vadd.xclbin").write_bytes(make_xclbin(U250_IFACE, U250_VADD, U250_VBNV))
    return t.root


HOSTS = {"fpga-d5005": build_d5005, "fpga-n3000": build_n3000, "fpga-u250": build_u250}

if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: fpga_hosts.py <dir>  (writes fpga-d5005, fpga-n3000, fpga-u250 there)", file=sys.stderr)
        raise SystemExit(2)
    for name, build in HOSTS.items():
        build(Path(sys.argv[1]) / name)
