"""Writes the sample host ``examples/hosts/sriov-cx6dx`` (see its README for where every value
comes from): ``python examples/hosts/sriov_cx6dx.py examples/hosts/sriov-cx6dx``.

A dual-port NVIDIA ConnectX-6 Dx (15b3:101d, ``mlx5_core``, Ethernet/RoCE) behind root port
0000:c0:01.1 of an AMD EPYC host, with 4 VFs (15b3:101e) on port 0, each with its RDMA device.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from dra_framework.testing.hosttree import HostTree

_spec = importlib.util.spec_from_file_location("nic_tree", Path(__file__).with_name("nic_tree.py"))
nic = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(nic)

ROOT_PORT = "0000:c0:01.1"
PARENT = f"pci0000:c0/{ROOT_PORT}"
PFS = ["0000:c1:00.0", "0000:c1:00.1"]
PF_NAMES = ["enp193s0f0np0", "enp193s0f1np1"]
PF_MACS = ["0c:42:a1:7e:25:d0", "0c:42:a1:7e:25:d1"]
VFS = ["0000:c1:00.2", "0000:c1:00.3", "0000:c1:00.4", "0000:c1:00.5"]
VF_MACS = ["d6:5c:02:41:9e:10", "26:8f:a3:c0:55:e1", "9e:13:77:0b:d2:46", "1a:e4:c9:38:60:7b"]
GROUPS = {ROOT_PORT: 32, PFS[0]: 33, PFS[1]: 34, VFS[0]: 35, VFS[1]: 36, VFS[2]: 37, VFS[3]: 38}
VFIO_MAJOR = 243
PCI_IDS = """#
#\tList of PCI ID's (excerpt)
#
#\tVersion: 2023.08.10
#
#\tMaintained by Albert Pool, Martin Mares, and other volunteers from
#\tthe PCI ID Project at https://pci-ids.ucw.cz/.
#
#\tThis file can be distributed under either the GNU General Public License
#\t(version 2 or higher) or the 3-clause BSD License.
#
1022  Advanced Micro Devices, Inc. [AMD]
\t1483  Starship/Matisse GPP Bridge
15b3  Mellanox Technologies
\t101d  MT2892 Family [ConnectX-6 Dx]
\t101e  ConnectX Family mlx5Gen Virtual Function
"""


def build(root: str | Path) -> Path:
    t = HostTree(root)
    common = dict(parent=PARENT, numa_node=0, local_cpulist="0-63")
    t.pci_function(ROOT_PORT, parent="pci0000:c0", vendor="1022", device="1483", class_code="060400",
                   driver="pcieport", numa_node=0, local_cpulist="0-63", iommu_group=GROUPS[ROOT_PORT])
    for port, pf in enumerate(PFS):
        t.pci_function(pf, vendor="15b3", device="101d", class_code="020000",
                       driver="mlx5_core", iommu_group=GROUPS[pf], **common)
        t.netdev(pf, PF_NAMES[port], type="1", operstate="up", carrier="1", speed="100000", mtu="1500",
                 address=PF_MACS[port], phys_port_name=f"p{port}")
        nic.rdma_function(t, pf, f"mlx5_{port}", port)
    for i, vf in enumerate(VFS):
        t.pci_function(vf, vendor="15b3", device="101e", class_code="020000", driver="mlx5_core",
                       iommu_group=GROUPS[vf], **common)
        t.netdev(vf, f"enp193s0f0v{i}", type="1", operstate="up", mtu="1500", address=VF_MACS[i])
        nic.rdma_function(t, vf, f"mlx5_{i + 2}", i + 2)
    t.sriov(PFS[0], VFS)
    t.file(f"sys/bus/pci/devices/{PFS[1]}/sriov_numvfs", "0\n")
    t.pci_driver("vfio-pci", module="vfio_pci")
    t.char_device("dev/vfio/vfio", 10, 196)
    t.char_device("dev/vhost-net", 10, 238)
    t.char_device("dev/net/tun", 10, 200)
    nic.rdma_cm(t)
    t.proc_devices([(10, "misc"), (nic.UVERBS_MAJOR, "infiniband_verbs"), (VFIO_MAJOR, "vfio")])
    t.pci_ids(PCI_IDS)
    nic.fake_netlink(t, {PF_NAMES[0]: len(VFS)})
    return t.root


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: sriov_cx6dx.py <dir>", file=sys.stderr)
        raise SystemExit(2)
    build(sys.argv[1])
