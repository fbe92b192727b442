"""Shared parts of the NIC sample-host generators (sriov_cx6dx.py, dgx_h100_cx7.py): RDMA sysfs
and character devices of an mlx5 function, and the per-VF state the sriov_nic fake netlink reads.

Kernel facts used (include/rdma, drivers/infiniband/core): ``/dev/infiniband/uverbs<N>`` is
character device 231:192+N (IB_UVERBS_MAJOR, IB_UVERBS_BASE_MINOR), ``umad<N>`` 231:N and
``issm<N>`` 231:64+N (IB_UMAD_MAJOR, IB_UMAD_MINOR_BASE, IB_UMAD_NUM_FIXED_MINOR); sysfs links a
function to them through ``<device>/infiniband/<dev>``, ``infiniband_verbs/uverbs<N>`` and
``infiniband_mad/{umad,issm}<N>``. ``rdma_cm`` is a misc device with a dynamic minor.
"""
from __future__ import annotations

import json

from dra_framework.testing.hosttree import HostTree

UVERBS_MAJOR = 231
RDMA_CM_MINOR = 58  # dynamic misc minor; the value a ConnectX host showed in `ls -l /dev/infiniband`


def rdma_function(t: HostTree, bdf: str, ibdev: str, n: int) -> None:
    """``ibdev`` (``mlx5_2``) with char devices uverbs<n>, umad<n>, issm<n> on function ``bdf``."""
    d = t.device_dir(bdf).relative_to(t.root)
    t.file(f"{d}/infiniband/{ibdev}/node_type", "1: CA\n")
    t.rel_symlink(f"sys/class/infiniband/{ibdev}", f"{d}/infiniband/{ibdev}")
    for cls, name, minor in (("infiniband_verbs", f"uverbs{n}", 192 + n), ("infiniband_mad", f"umad{n}", n),
                             ("infiniband_mad", f"issm{n}", 64 + n)):
        t.file(f"{d}/{cls}/{name}/ibdev", f"{ibdev}\n")
        t.file(f"{d}/{cls}/{name}/dev", f"{UVERBS_MAJOR}:{minor}\n")
        t.char_device(f"dev/infiniband/{name}", UVERBS_MAJOR, minor)


def rdma_cm(t: HostTree) -> None:
    t.char_device("dev/infiniband/rdma_cm", 10, RDMA_CM_MINOR)


def fake_netlink(t: HostTree, vfs_per_pf: dict[str, int], *, spoofchk: bool = True) -> None:
    """``fake-netlink.json``: what ``ip link show <pf>`` lists per VF when nothing was set."""
    state = {pf: {str(i): {"mac": "00:00:00:00:00:00", "vlan": 0, "spoofchk": spoofchk, "trust": False}
                  for i in range(n)} for pf, n in vfs_per_pf.items()}
    t.file("fake-netlink.json", json.dumps({"vfs": state}, indent=2, sort_keys=True) + "\n")
