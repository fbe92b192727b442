"""End to end: ``dra-framework run`` with the sriov-minimal backend on a copy of the sriov-e810
sample host publishes one device per VF to a real kube-apiserver; the scheduler's allocator picks
a VF by its standard and driver attributes; the kubelet's DRA code prepares the pod (the VF is
rebound to vfio-pci, by the daemon's writes, with FakePciKernel playing the kernel); the
reference CDI library resolves the IDs; after a driver restart, unprepare restores iavf."""
from __future__ import annotations

import json
import sys

import pytest
from sriov_helpers import REPO, build_sample_host

from dra_framework.api import PciFunction
from dra_framework.testing.hosttree import FakePciKernel

sys.path.insert(0, str(REPO / "tests/e2e"))
from daemon_proc import Daemon, wait_for  # noqa: E402

pytestmark = pytest.mark.k8s
DRIVER = "vf.sriov.example.dra.dev"


def _slices(objects, node):
    # The typed model: a generic ResourceSlice clashes with it once both are loaded in a session.
    from lightkube.resources.resource_v1 import ResourceSlice as RS
    return [s.to_dict() if hasattr(s, "to_dict") else dict(s)
            for s in objects.client.list(RS, fields={"spec.driver": DRIVER})
            if (s.to_dict() if hasattr(s, "to_dict") else dict(s))["spec"].get("nodeName") == node]


def test_sriov_minimal_end_to_end(kube_apiserver, k8s_objects, kubelet_shim, allocator, cdi_check, tmp_path):
    node = "e2e-sriov"
    host = build_sample_host(tmp_path / "host")
    shim = kubelet_shim(node)
    cfg = {"nodeName": node, "kubeletRootDir": str(shim.root), "cdiRoot": str(tmp_path / "cdi"),
           "stateDir": str(tmp_path / "state"), "kubeconfig": str(kube_apiserver.kubeconfig),
           "drivers": [{"name": DRIVER, "backends": [{"name": "sriov-minimal",
                                                      "options": {"hostRoot": str(host), "hotplug": False}}]}]}
    daemon = Daemon(cfg, tmp_path, "sriov").start()
    try:
        with FakePciKernel(host) as kernel:
            first = shim.wait_registered(DRIVER, timeout=60)
            published = wait_for(lambda: _slices(k8s_objects, node), 60, "ResourceSlices", daemon)
            devices = {d["name"]: d for s in published for d in s["spec"].get("devices", [])}
            assert sorted(devices) == [f"vf-0000-17-01-{i}" for i in range(4)]
            assert devices["vf-0000-17-01-1"]["attributes"]["resource.kubernetes.io/pcieRoot"] == {"string": "pci0000:16"}

            k8s_objects.device_class("sriov-vf", DRIVER)
            k8s_objects.resource_claim("default", "nic", {"devices": {"requests": [{
                "name": "vf", "exactly": {"deviceClassName": "sriov-vf", "selectors": [{"cel": {"expression":
                    "device.attributes['resource.kubernetes.io'].pcieRoot == 'pci0000:16' && "
                    f"device.attributes['{DRIVER}'].pfName == 'enp23s0f0' && "
                    f"device.attributes['{DRIVER}'].vfIndex == 1"}}]}}]}})
            k8s_objects.pod("default", "p-nic", claims=["nic"], node=node)
            result = allocator.allocate("default", "nic", node, pod=("default", "p-nic"))
            assert result["devices"]["results"][0]["device"] == "vf-0000-17-01-1"

            prepared = shim.prepare_pod("default", "p-nic")
            edits = json.dumps(cdi_check(tmp_path / "cdi", prepared["nic"]))
            assert "/dev/vfio/18" in edits and "/dev/vfio/vfio" in edits
            assert "PCIDEVICE_VF_0000_17_01_1=0000:17:01.1" in edits
            vf = PciFunction.at(host, "0000:17:01.1")
            assert vf.driver == "vfio-pci" and vf.driver_override is None
            assert ("drivers/vfio-pci/bind", "0000:17:01.1") in kernel.writes

            assert daemon.stop() == 0, daemon.logs()  # unprepare comes from the checkpoint
            daemon.start().wait_running()
            wait_for(lambda: shim.registered()["drivers"].get(DRIVER, {}).get("since") not in (None, first["since"]),
                     60, "the restarted driver to register", daemon)
            shim.unprepare_pod("default", "p-nic")
            assert vf.driver == "iavf", daemon.logs()
            assert not list((tmp_path / "cdi").glob("*.json"))
    finally:
        daemon.stop()


def test_hotplug_new_vf_is_published(kube_apiserver, k8s_objects, kubelet_shim, tmp_path):
    """A fifth VF appears (what ``echo 5 > sriov_numvfs`` does to sysfs) and the kernel sends a
    uevent: the daemon's netlink watcher makes the driver rediscover and publish it."""
    import os

    from dra_framework.testing.hosttree import HostTree

    devs = sorted(os.listdir("/sys/bus/pci/devices")) if os.path.isdir("/sys/bus/pci/devices") else []
    target = f"/sys/bus/pci/devices/{devs[0]}/uevent" if devs else ""
    if os.geteuid() != 0 or not target or not os.access(target, os.W_OK):
        pytest.skip("needs root and a writable /sys/bus/pci/devices/*/uevent for a synthetic uevent")
    node = "e2e-sriov-hotplug"
    host = build_sample_host(tmp_path / "host")
    shim = kubelet_shim(node)
    cfg = {"nodeName": node, "kubeletRootDir": str(shim.root), "cdiRoot": str(tmp_path / "cdi"),
           "stateDir": str(tmp_path / "state"), "kubeconfig": str(kube_apiserver.kubeconfig),
           "drivers": [{"name": DRIVER, "backends": [{"name": "sriov-minimal", "options": {"hostRoot": str(host)}}]}]}
    daemon = Daemon(cfg, tmp_path, "hotplug").start()
    try:
        def names():
            return sorted(d["name"] for s in _slices(k8s_objects, node) for d in s["spec"].get("devices", []))

        vfs_names = [f"vf-0000-17-01-{i}" for i in range(4)]
        wait_for(lambda: names() == vfs_names, 60, "4 VFs published", daemon)
        t = HostTree(host)
        vfs = ["0000:17:01.0", "0000:17:01.1", "0000:17:01.2", "0000:17:01.3", "0000:17:01.4"]
        t.pci_function(vfs[-1], parent="pci0000:16/0000:16:01.0", vendor="8086", device="1889",
                       class_code="020000", driver="iavf", numa_node=0, iommu_group=21)
        t.sriov("0000:17:00.0", vfs)
        with open(target, "w") as f:  # the kernel announces it (a synthetic uevent on a real device)
            f.write("change")
        wait_for(lambda: "vf-0000-17-01-4" in names(), 30, "the new VF published", daemon)
        # ... and goes again (echo 4 > sriov_numvfs): links gone, another uevent
        (host / "sys/bus/pci/devices/0000:17:01.4").unlink()
        (t.device_dir("0000:17:00.0") / "virtfn4").unlink()
        with open(target, "w") as f:
            f.write("change")
        wait_for(lambda: names() == vfs_names, 30, "the removed VF unpublished", daemon)
        assert "hot-plug events unavailable" not in daemon.logs()
    finally:
        daemon.stop()
