"""Hot-plug: udev pci/net events (sriov_numvfs changed, VF added or removed) make the backend
ask for rediscovery, debounced, without a restart; rediscovery then sees the new VF set."""
from __future__ import annotations

import logging
import threading

from sriov_nic_helpers import DRIVER, build_host, discover

from dra_framework.api import BackendContext
from dra_framework.testing.hosttree import FakeUdevSource, HostTree

from dra_backends.sriov_nic.backend import SriovNicBackend
from dra_backends.sriov_nic.options import SriovNicOptions


def test_udev_events_trigger_rediscovery(tmp_path):
    root = build_host("e810", tmp_path / "h")
    fired = threading.Event()
    ctx = BackendContext(driver_name=DRIVER, node_name="n", host_root=root, state_dir=tmp_path / "s",
                         cdi_root=tmp_path / "c", logger=logging.getLogger("t"), on_rediscovery=fired.set)
    source = FakeUdevSource()
    b = SriovNicBackend(SriovNicOptions.model_validate({"hostRoot": str(root), "netlink": "fake", "selectors": [{}]}),
                        ctx, udev_source=source)
    try:
        assert len(discover(b)) == 4
        # echo 5 > sriov_numvfs: a fifth VF appears, the kernel announces it
        t = HostTree(root)
        vfs = [f"0000:17:01.{i}" for i in range(5)]
        t.pci_function(vfs[-1], parent="pci0000:16/0000:16:01.0", vendor="8086", device="1889",
                       class_code="020000", driver="iavf", numa_node=0, iommu_group=21)
        t.sriov("0000:17:00.0", vfs)
        source.emit("add", "/sys/devices/pci0000:16/0000:16:01.0/0000:17:01.4")
        source.emit("add", "/sys/devices/pci0000:16/0000:16:01.0/0000:17:01.4/net/enp23s0f0v4", "net")
        assert fired.wait(5), "no rediscovery requested"
        assert "vf-0000-17-01-4" in discover(b)
        # link up/down of a PF netdev reaches the backend as a net event too
        fired.clear()
        source.emit("change", "/sys/devices/pci0000:16/0000:16:01.0/0000:17:00.0/net/enp23s0f0", "net")
        assert fired.wait(5)
    finally:
        b.dra_shutdown()
    assert source.stopped
