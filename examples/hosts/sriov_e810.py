"""Writes the sample host ``examples/hosts/sriov-e810`` (see its README for where every value
comes from): ``python examples/hosts/sriov_e810.py examples/hosts/sriov-e810``.

A dual-port Intel E810-C for QSFP (8086:1592, ``ice``) behind root port 0000:16:01.0 of a
two-socket Xeon Silver 4410Y, with 4 VFs (8086:1889) on port 0: three on ``iavf`` with netdevs,
the fourth already on ``vfio-pci``.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from dra_framework.testing.hosttree import HostTree

ROOT_PORT = "0000:16:01.0"
PARENT = f"pci0000:16/{ROOT_PORT}"
PFS = ["0000:17:00.0", "0000:17:00.1"]
VFS = ["0000:17:01.0", "0000:17:01.1", "0000:17:01.2", "0000:17:01.3"]
#: NUMA node 0 of that host (``lscpu``: even CPUs on node 0, odd ones on node 1).
NODE0_CPUS = ",".join(str(c) for c in range(0, 48, 2))
#: IOMMU groups: one per function (the root port has ACS), numbered in probe order.
GROUPS = {ROOT_PORT: 14, PFS[0]: 15, PFS[1]: 16, VFS[0]: 17, VFS[1]: 18, VFS[2]: 19, VFS[3]: 20}
#: Dynamic major of the vfio group nodes (``ls -l /dev/vfio`` on real hosts: ``243, 0``).
VFIO_MAJOR = 243
#: PF MAC addresses (Intel OUI b4:96:91, consecutive per port as on E810 cards).
PF_MACS = ["b4:96:91:a5:c8:40", "b4:96:91:a5:c8:41"]
#: VF MACs as iavf reports them when the PF set none (random, locally administered).
VF_MACS = ["ea:3e:5f:11:8b:20", "3a:b1:42:7c:0d:91", "b6:29:e0:54:a3:7f", "76:c8:1d:9e:40:02"]
#: pci.ids 2023.08.10 (https://pci-ids.ucw.cz/), the lines for these devices.
PCI_IDS = """#
#\tList of PCI ID's (excerpt)
#
#\tVersion: 2023.08.10
#\tDate:    2023-08-10 03:15:02
#
#\tMaintained by Albert Pool, Martin Mares, and other volunteers from
#\tthe PCI ID Project at https://pci-ids.ucw.cz/.
#
#\tThis file can be distributed under either the GNU General Public License
#\t(version 2 or higher) or the 3-clause BSD License.
#
8086  Intel Corporation
\t1592  Ethernet Controller E810-C for QSFP
\t\t8086 0002  Ethernet Network Adapter E810-C-Q2
\t1889  Ethernet Adaptive Virtual Function
"""


def build(root: str | Path) -> Path:
    t = HostTree(root)
    common = dict(parent=PARENT, numa_node=0, local_cpulist=NODE0_CPUS)
    t.pci_function(ROOT_PORT, parent="pci0000:16", vendor="8086", device="352a", class_code="060400",
                   driver="pcieport", numa_node=0, local_cpulist=NODE0_CPUS, iommu_group=GROUPS[ROOT_PORT])
    for port, pf in enumerate(PFS):
        t.pci_function(pf, vendor="8086", device="1592", class_code="020000", subsystem_vendor="8086",
                       subsystem_device="0002", driver="ice", iommu_group=GROUPS[pf], **common)
        t.netdev(pf, f"enp23s0f{port}", type="1", operstate="up", carrier="1", speed="100000", mtu="1500",
                 address=PF_MACS[port])
    for i, vf in enumerate(VFS):
        on_vfio = i == len(VFS) - 1
        t.pci_function(vf, vendor="8086", device="1889", class_code="020000", driver="vfio-pci" if on_vfio else "iavf",
                       native_driver="iavf", iommu_group=GROUPS[vf], **common)
        if not on_vfio:
            t.netdev(vf, f"enp23s0f0v{i}", type="1", operstate="up", mtu="1500", address=VF_MACS[i])
    t.sriov(PFS[0], VFS)
    t.file(f"sys/bus/pci/devices/{PFS[1]}/sriov_numvfs", "0\n")
    t.pci_driver("vfio-pci", module="vfio_pci")
    t.char_device("dev/vfio/vfio", 10, 196)  # VFIO_MINOR in include/linux/miscdevice.h
    t.char_device(f"dev/vfio/{GROUPS[VFS[-1]]}", VFIO_MAJOR, 0)  # the first group gets minor 0
    t.char_device("dev/vhost-net", 10, 238)  # VHOST_NET_MINOR
    t.char_device("dev/net/tun", 10, 200)  # TUN_MINOR
    t.proc_devices([(10, "misc"), (VFIO_MAJOR, "vfio")])
    # what the PF reports per VF (ip link show enp23s0f0): no administrative MAC or VLAN, spoof
    # checking on, trust off (the ice driver's defaults); read by the sriov_nic fake netlink
    vf_state = {str(i): {"mac": "00:00:00:00:00:00", "vlan": 0, "spoofchk": True, "trust": False}
                for i in range(len(VFS))}
    t.file("fake-netlink.json", json.dumps({"vfs": {"enp23s0f0": vf_state}}, indent=2, sort_keys=True) + "\n")
    t.pci_ids(PCI_IDS)
    return t.root


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: sriov_e810.py <dir>", file=sys.stderr)
        raise SystemExit(2)
    build(sys.argv[1])
