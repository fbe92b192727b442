"""Writes the sample host ``examples/hosts/dgx-h100-cx7`` (see its README):
``python examples/hosts/dgx_h100_cx7.py examples/hosts/dgx-h100-cx7``.

The DGX H100 sample host (``examples/hosts/dgx-h100``, copied as it is: 8 x H100, fake NVML)
plus its compute-fabric NICs: one single-port ConnectX-7 (15b3:1021, InfiniBand, ``mlx5_core``)
on the PCIe root complex of each GPU, as the DGX H100 user guide pairs them, each with 2 VFs
(15b3:101e) that have RDMA devices. Used by the composed nvidia + sriov_nic config
``examples/configs/dgx-h100-cx7.yaml`` (GPU-NIC alignment on ``resource.kubernetes.io/pcieRoot``).
"""
from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

from dra_framework.testing.hosttree import HostTree

_spec = importlib.util.spec_from_file_location("nic_tree", Path(__file__).with_name("nic_tree.py"))
nic = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(nic)

GPU_HOST = Path(__file__).with_name("dgx-h100")
#: (GPU address in the dgx-h100 sample, NIC PF address, IB netdev, RDMA device), from the DGX H100
#: user guide's network-port table (port -> ConnectX -> GPU -> interface -> RDMA device); the PF
#: address is the bus in the interface name (ibp24s0: bus 24 = 0x18). GPU 7's NIC (ibp220s0, bus
#: 0xdc) is left out: the dgx-h100 sample puts GPU 7's root complex at bus 0xdc.
PAIRS = [
    ("0000:1b:00.0", "0000:18:00.0", "ibp24s0", 0),
    ("0000:43:00.0", "0000:40:00.0", "ibp64s0", 3),
    ("0000:52:00.0", "0000:4f:00.0", "ibp79s0", 4),
    ("0000:61:00.0", "0000:5e:00.0", "ibp94s0", 5),
    ("0000:9d:00.0", "0000:9a:00.0", "ibp154s0", 6),
    ("0000:c3:00.0", "0000:c0:00.0", "ibp192s0", 9),
    ("0000:d1:00.0", "0000:ce:00.0", "ibp206s0", 10),
]
VFS_PER_PF = 2
FIRST_VF_RDMA = 12  # mlx5_0 .. mlx5_11 are the 12 PFs of a DGX H100 (8 compute, 4 storage)
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
15b3  Mellanox Technologies
\t101e  ConnectX Family mlx5Gen Virtual Function
\t1021  MT2910 Family [ConnectX-7]
"""


def build(root: str | Path) -> Path:
    root = Path(root)
    shutil.copytree(GPU_HOST, root, symlinks=True, dirs_exist_ok=True)
    t = HostTree(root)
    vf_rdma = FIRST_VF_RDMA
    group = 200
    for gpu, pf, ifname, ibdev in PAIRS:
        gpu_dir = t.device_dir(gpu)
        numa = int((gpu_dir / "numa_node").read_text())
        rc = gpu_dir.parent.parent.name  # pci0000:15
        parent = f"{rc}/{rc[3:7]}:{rc[8:]}:03.0"  # a root port of the same root complex
        common = dict(parent=parent, numa_node=numa, driver="mlx5_core")
        t.pci_function(pf, vendor="15b3", device="1021", class_code="020700", iommu_group=group, **common)
        t.netdev(pf, ifname, type="32", operstate="up", carrier="1", speed="400000", mtu="4092")
        nic.rdma_function(t, pf, f"mlx5_{ibdev}", ibdev)
        vfs = [f"{pf[:-1]}{i + 1}" for i in range(VFS_PER_PF)]
        for i, vf in enumerate(vfs):
            t.pci_function(vf, vendor="15b3", device="101e", class_code="020700", iommu_group=group + 1 + i, **common)
            t.netdev(vf, f"{ifname[:-2]}s0f{i + 1}", type="32", operstate="up", mtu="4092")
            nic.rdma_function(t, vf, f"mlx5_{vf_rdma}", vf_rdma)
            vf_rdma += 1
        t.sriov(pf, vfs)
        group += 1 + VFS_PER_PF
    t.pci_driver("vfio-pci", module="vfio_pci")
    t.char_device("dev/vfio/vfio", 10, 196)
    nic.rdma_cm(t)
    devices = (root / "proc/devices").read_text()
    if "infiniband_verbs" not in devices:
        (root / "proc/devices").write_text(devices.replace("Character devices:\n",
                                                           f"Character devices:\n{nic.UVERBS_MAJOR} infiniband_verbs\n", 1))
    t.pci_ids(PCI_IDS)
    nic.fake_netlink(t, {ifname: VFS_PER_PF for _g, _p, ifname, _i in PAIRS}, spoofchk=False)
    return root


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: dgx_h100_cx7.py <dir>", file=sys.stderr)
        raise SystemExit(2)
    build(sys.argv[1])
