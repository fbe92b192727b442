"""End to end with ``dra-framework run`` and the sriov_nic backend against a real kube-apiserver,
the scheduler's allocator, the kubelet's DRA code (kubelet shim) and the reference CDI library,
on copies of the sample hosts (FakePciKernel answers the rebinding writes, the fake netlink
keeps the VF state in the host tree):

* a ConnectX-6 Dx VF chosen by pfName and rdma, handed over as a netdev with its RDMA devices;
* an E810 VF put on vfio-pci by a DeviceClass config: the sysfs writes appear in the fake tree
  and are undone after unprepare;
* kill -9 between unbind and bind, then a restart: the original driver comes back;
* one claim for a GPU and a VF with ``matchAttribute: resource.kubernetes.io/pcieRoot``,
  allocated from the combined DGX H100 + ConnectX-7 host's slices and prepared by the two
  drivers of one process.
"""
from __future__ import annotations

import json

import pytest
from sriov_nic_helpers import DRIVER, build_host

from dra_framework.api import PciFunction
from dra_framework.killpoints import KILL_AT, KILL_LOG, read_log
from dra_framework.testing import ShimError, wait_for
from dra_framework.testing.hosttree import FakePciKernel

pytestmark = pytest.mark.k8s
GPU = "gpu.nvidia.com"
API = "sriovnic.dra-framework.io/v1alpha1"


def _slices(objects, driver, node):
    from lightkube.resources.resource_v1 import ResourceSlice as RS
    out = []
    for s in objects.client.list(RS, fields={"spec.driver": driver}):
        d = s.to_dict() if hasattr(s, "to_dict") else dict(s)
        if d["spec"].get("nodeName") == node:
            out.append(d)
    return out


def _devices(objects, driver, node, want):
    def get():
        devs = {d["name"]: d for s in _slices(objects, driver, node) for d in s["spec"].get("devices", [])}
        return devs if len(devs) >= want else None
    return get


def _cfg(host, **opts):
    return {"janitorIntervalSeconds": 5, "drivers": [{"name": DRIVER, "backends": [{"name": "sriov-nic", "options": {
        "hostRoot": str(host), "netlink": "fake", "hotplug": False, "netdevWaitSeconds": 1, **opts}}]}]}


def _vf_state(host):
    return json.loads((host / "fake-netlink.json").read_text())["vfs"]


def _claim(objects, name, requests, config=(), constraints=()):
    spec = {"devices": {"requests": requests}}
    if config:
        spec["devices"]["config"] = list(config)
    if constraints:
        spec["devices"]["constraints"] = list(constraints)
    return objects.resource_claim("default", name, spec)


def _reregistered(shim, drv, since):
    """Wait until the restarted daemon registered again (the kubelet keeps the old entry until then)."""
    return wait_for(lambda: (lambda r: r if r and r.get("since") not in (None, since) else None)(
        shim.registered()["drivers"].get(DRIVER)), 90, "the restarted driver to register", proc=drv)["since"]


def _opaque(params, requests=()):
    # keys sorted as kubectl sends them (YAML -> map -> JSON): the API server re-sorts opaque
    # parameters on a server-side apply of the claim status and would then see status.allocation change
    c = {"opaque": {"driver": DRIVER, "parameters": dict(sorted({"apiVersion": API, "kind": "VfConfig", **params}.items()))}}
    if requests:
        c["requests"] = list(requests)
    return c


def test_rdma_vf_by_pf_name_as_netdev(kube_apiserver, k8s_objects, kubelet_shim, allocator, cdi_check, dra_driver, tmp_path):
    node = "e2e-cx6dx"
    host = build_host("cx6dx", tmp_path / "host")
    original = _vf_state(host)
    shim = kubelet_shim(node)
    with FakePciKernel(host):
        drv = dra_driver(_cfg(host, selectors=[{"pfNames": ["enp193s0f0np0"], "rdma": True}]), shim)
        shim.wait_registered(DRIVER, timeout=90)
        wait_for(_devices(k8s_objects, DRIVER, node, 4), 90, "4 VFs published", proc=drv)
        k8s_objects.device_class("vf.sriovnic", DRIVER)
        _claim(k8s_objects, "roce", [{"name": "nic", "exactly": {"deviceClassName": "vf.sriovnic", "selectors": [
            {"cel": {"expression": f"device.attributes['{DRIVER}'].pfName == 'enp193s0f0np0' && "
                     f"device.attributes['{DRIVER}'].rdma && device.attributes['{DRIVER}'].vfID == 2"}}]}}],
               config=[_opaque({"ifName": "roce0", "vlan": 100, "mtu": 9000})])
        k8s_objects.pod("default", "p-roce", claims=["roce"], node=node)
        result = allocator.allocate("default", "roce", node, pod=("default", "p-roce"))
        assert [r["device"] for r in result["devices"]["results"]] == ["vf-0000-c1-00-4"]

        prepared = shim.prepare_pod("default", "p-roce")
        text = json.dumps(cdi_check(drv.cdi_dir, prepared["roce"]))  # resolved and injected by the CDI library
        # cdi-check prints env and nodes; the netdev hand-off is in the spec (CDI 1.1 netDevices)
        (spec_file,) = drv.cdi_dir.glob("*.json")
        spec = json.loads(spec_file.read_text())
        assert spec["cdiVersion"] == "1.1.0"
        assert spec["devices"][0]["containerEdits"]["netDevices"] == [{"hostInterfaceName": "enp193s0f0v2", "name": "roce0"}]
        for node_path in ("/dev/infiniband/uverbs4", "/dev/infiniband/umad4", "/dev/infiniband/rdma_cm"):
            assert node_path in text
        assert "SRIOVNIC_VF_0000_C1_00_4=0000:c1:00.4" in text and "SRIOVNIC_VF_0000_C1_00_4_RDMA_DEVICE=mlx5_4" in text
        assert _vf_state(host)["enp193s0f0np0"]["2"]["vlan"] == 100
        assert (host / "sys/class/net/enp193s0f0v2/mtu").read_text() == "9000\n"
        status = k8s_objects.get("ResourceClaim", "roce", "default")["status"]["devices"]
        assert [(s["device"], s["networkData"]["interfaceName"], s["networkData"]["hardwareAddress"], s["data"]["vlan"])
                for s in status] == [("vf-0000-c1-00-4", "roce0", "9e:13:77:0b:d2:46", 100)]

        shim.unprepare_pod("default", "p-roce")
        assert _vf_state(host) == original
        assert (host / "sys/class/net/enp193s0f0v2/mtu").read_text() == "1500\n"
        assert not list(drv.cdi_dir.glob("*.json"))
        wait_for(lambda: not k8s_objects.get("ResourceClaim", "roce", "default")["status"].get("devices"), 30,
                 "device status cleared", proc=drv)


def test_vfio_pci_by_class_config_and_undone(kube_apiserver, k8s_objects, kubelet_shim, allocator, cdi_check, dra_driver,
                                            tmp_path):
    node = "e2e-e810"
    host = build_host("e810", tmp_path / "host")
    shim = kubelet_shim(node)
    with FakePciKernel(host) as kernel:
        drv = dra_driver(_cfg(host, selectors=[{"pfNames": ["enp23s0f0#0-2"]}]), shim)
        shim.wait_registered(DRIVER, timeout=90)
        wait_for(_devices(k8s_objects, DRIVER, node, 3), 90, "3 VFs published", proc=drv)
        k8s_objects.device_class("dpdk.sriovnic", DRIVER, config=[_opaque({"driver": "vfio-pci"})])
        _claim(k8s_objects, "dpdk", [{"name": "nic", "exactly": {"deviceClassName": "dpdk.sriovnic", "selectors": [
            {"cel": {"expression": f"device.attributes['{DRIVER}'].vfID == 1"}}]}}])
        k8s_objects.pod("default", "p-dpdk", claims=["dpdk"], node=node)
        allocator.allocate("default", "dpdk", node, pod=("default", "p-dpdk"))
        prepared = shim.prepare_pod("default", "p-dpdk")
        text = json.dumps(cdi_check(drv.cdi_dir, prepared["dpdk"]))
        assert "/dev/vfio/18" in text and "/dev/vfio/vfio" in text and "netDevices" not in text
        vf = PciFunction.at(host, "0000:17:01.1")
        assert vf.driver == "vfio-pci" and vf.driver_override is None
        assert kernel.writes == [("drivers/iavf/unbind", "0000:17:01.1"), ("drivers/vfio-pci/bind", "0000:17:01.1")]
        assert (host / "dev/vfio/18").exists()

        shim.unprepare_pod("default", "p-dpdk")
        assert vf.driver == "iavf" and vf.driver_override is None
        assert kernel.writes[2:] == [("drivers/vfio-pci/unbind", "0000:17:01.1"), ("drivers/iavf/bind", "0000:17:01.1")]
        assert not (host / "dev/vfio/18").exists()


def test_kill9_between_unbind_and_bind_then_restart_restores(kube_apiserver, k8s_objects, kubelet_shim, allocator,
                                                             dra_driver, tmp_path):
    node = "e2e-e810-kill"
    host = build_host("e810", tmp_path / "host")
    shim = kubelet_shim(node)
    log = tmp_path / "kill.log"
    with FakePciKernel(host):
        drv = dra_driver(_cfg(host, selectors=[{"pfNames": ["enp23s0f0#0-2"]}]), shim, env={KILL_LOG: str(log)})
        since = shim.wait_registered(DRIVER, timeout=90)["since"]
        wait_for(_devices(k8s_objects, DRIVER, node, 3), 90, "3 VFs published", proc=drv)
        k8s_objects.device_class("vf.sriovnic", DRIVER)
        vf = PciFunction.at(host, "0000:17:01.1")
        for name, vf_id in (("count", 0), ("crash", 1)):  # same steps on two VFs (a claim keeps its VF)
            _claim(k8s_objects, name, [{"name": "nic", "exactly": {"deviceClassName": "vf.sriovnic", "selectors": [
                {"cel": {"expression": f"device.attributes['{DRIVER}'].vfID == {vf_id}"}}]}}],
                   config=[_opaque({"driver": "vfio-pci"})])
            k8s_objects.pod("default", f"p-{name}", claims=[name], node=node)
        # count the kill points of one such prepare; the journal entry before the bind write is the
        # third "record" of the rebind key (steps unbind, override, bind)
        allocator.allocate("default", "count", node, pod=("default", "p-count"))
        shim.prepare_pod("default", "p-count")
        shim.unprepare_pod("default", "p-count")
        points = read_log(log)
        rebind = [i for i, p in enumerate(points) if p == "record sriov-nic pci.rebind/0000:17:01.0"]
        assert len(rebind) >= 3, points
        # a fresh process counts from 1 again and reaches the same points (start-up, then this prepare)
        drv.restart(env={KILL_AT: str(rebind[2] + 1)})
        since = _reregistered(shim, drv, since)
        allocator.allocate("default", "crash", node, pod=("default", "p-crash"))
        with pytest.raises(ShimError):  # the driver died under the kubelet's call
            shim.prepare_pod("default", "p-crash")
        assert drv.wait_exit(30) == -9
        # unbound from iavf, override set, vfio-pci not bound yet
        assert vf.driver is None and vf.driver_override == "vfio-pci", (vf.driver, vf.driver_override)

        drv.env = {}
        drv.start().wait_running()
        _reregistered(shim, drv, since)
        shim.unprepare_pod("default", "p-crash")
        assert vf.driver == "iavf" and vf.driver_override is None, drv.logs()
        assert not drv.checkpoint(DRIVER)


def test_gpu_and_vf_aligned_on_pcie_root(kube_apiserver, k8s_objects, kubelet_shim, allocator, cdi_check, dra_driver,
                                         tmp_path):
    """nvidia and sriov_nic in one process on the combined DGX H100 + ConnectX-7 host: a claim
    for GPU 0000:9d:00.0 and any VF with matchAttribute resource.kubernetes.io/pcieRoot gets a VF
    of the NIC on the GPU's root complex (pci0000:97), and both drivers prepare their device."""
    node = "e2e-dgx-cx7"
    host = build_host("dgx", tmp_path / "host")
    shim = kubelet_shim(node)
    cfg = {"janitorIntervalSeconds": 5, "drivers": [
        {"name": GPU, "backends": [{"name": "nvidia", "options": {
            "nvml": "fake", "hostRoot": str(host), "driverRoot": str(host), "hostDriverRoot": "/",
            "migStrategy": "none", "executor": "record"}}]},
        _cfg(host, selectors=[{"vendors": ["15b3"], "devices": ["101e"], "linkTypes": ["infiniband"]}])["drivers"][0]]}
    with FakePciKernel(host):
        drv = dra_driver(cfg, shim)
        shim.wait_registered(GPU, timeout=90)
        shim.wait_registered(DRIVER, timeout=90)
        gpus = wait_for(_devices(k8s_objects, GPU, node, 8), 90, "8 GPUs published", proc=drv)
        vfs = wait_for(_devices(k8s_objects, DRIVER, node, 14), 90, "14 VFs published", proc=drv)
        root = "resource.kubernetes.io/pcieRoot"
        assert gpus["gpu-0000-9d-00-0"]["attributes"][root] == {"string": "pci0000:97"}
        assert {n for n, d in vfs.items() if d["attributes"][root] == {"string": "pci0000:97"}} == \
            {"vf-0000-9a-00-1", "vf-0000-9a-00-2"}

        k8s_objects.device_class("gpu.nvidia.com", GPU, cel=f"device.attributes['{GPU}'].type == 'gpu'")
        k8s_objects.device_class("vf.sriovnic", DRIVER)
        _claim(k8s_objects, "gpu-nic", [
            {"name": "gpu", "exactly": {"deviceClassName": "gpu.nvidia.com", "selectors": [
                {"cel": {"expression": "device.attributes['resource.kubernetes.io'].pciBusID == '0000:9d:00.0'"}}]}},
            {"name": "nic", "exactly": {"deviceClassName": "vf.sriovnic"}}],
            constraints=[{"requests": ["gpu", "nic"], "matchAttribute": root}])
        k8s_objects.pod("default", "p-train", claims=["gpu-nic"], node=node)
        allocation = allocator.allocate("default", "gpu-nic", node, pod=("default", "p-train"))
        print("allocation:", json.dumps(allocation["devices"]["results"], indent=1))
        results = {r["request"]: (r["driver"], r["device"]) for r in allocation["devices"]["results"]}
        assert results["gpu"] == (GPU, "gpu-0000-9d-00-0")
        assert results["nic"][0] == DRIVER and results["nic"][1] in {"vf-0000-9a-00-1", "vf-0000-9a-00-2"}

        prepared = shim.prepare_pod("default", "p-train")
        ids = prepared["gpu-nic"]
        print("CDI ids:", ids)
        assert sorted(i.split("=")[0] for i in ids) == ["k8s.gpu.nvidia.com/claim", "k8s.sriovnic.dra-framework.io/claim"]
        text = json.dumps(cdi_check(drv.cdi_dir, ids))
        assert "/dev/nvidia4" in text and "/dev/infiniband/uverbs" in text and f"=0000:9a:00.{results['nic'][1][-1]}" in text
        assert set(drv.checkpoint(GPU)) == set(drv.checkpoint(DRIVER))  # the claim in both drivers' checkpoints
        shim.unprepare_pod("default", "p-train")
        assert not drv.checkpoint(GPU) and not drv.checkpoint(DRIVER)
        assert not list(drv.cdi_dir.glob("*.json"))


def test_pf_link_down_taints_published_vfs_until_it_is_up(kube_apiserver, k8s_objects, kubelet_shim, dra_driver,
                                                          tmp_path):
    """The PF's link goes down (operstate): the daemon republishes its VFs with the NoSchedule
    taint, and without it once the link is back; no restart in between."""
    node = "e2e-e810-link"
    host = build_host("e810", tmp_path / "host")
    shim = kubelet_shim(node)
    drv = dra_driver(_cfg(host, selectors=[{"pfNames": ["enp23s0f0"]}], healthIntervalSeconds=0.3), shim)
    shim.wait_registered(DRIVER, timeout=90)
    wait_for(_devices(k8s_objects, DRIVER, node, 4), 90, "4 VFs published", proc=drv)

    def taints():
        devs = _devices(k8s_objects, DRIVER, node, 4)() or {}
        return {n: [(t["key"], t.get("value"), t["effect"]) for t in d.get("taints", [])] for n, d in devs.items()}

    (host / "sys/class/net/enp23s0f0/operstate").write_text("down\n")
    want = [(f"{DRIVER}/pf-link-down", "enp23s0f0", "NoSchedule")]
    wait_for(lambda: all(t == want for t in taints().values()), 60, "all 4 VFs tainted", proc=drv)
    (host / "sys/class/net/enp23s0f0/operstate").write_text("up\n")
    wait_for(lambda: not any(taints().values()), 60, "taints removed", proc=drv)
    assert drv.runs == 1


def test_hotplug_vf_added_and_removed_without_restart(kube_apiserver, k8s_objects, kubelet_shim, dra_driver, tmp_path):
    """A fifth VF appears under the PF's virtfn links (what ``echo 5 > sriov_numvfs`` does) and
    the kernel sends a uevent: the daemon's udev watcher makes it rediscover and publish the VF;
    removing it again unpublishes it. The uevent is a synthetic one on a real PCI device."""
    import os

    from dra_framework.testing.hosttree import HostTree

    devs = sorted(os.listdir("/sys/bus/pci/devices")) if os.path.isdir("/sys/bus/pci/devices") else []
    target = f"/sys/bus/pci/devices/{devs[0]}/uevent" if devs else ""
    if os.geteuid() != 0 or not target or not os.access(target, os.W_OK):
        pytest.skip("needs root and a writable /sys/bus/pci/devices/*/uevent for a synthetic uevent")
    node = "e2e-e810-hotplug"
    host = build_host("e810", tmp_path / "host")
    shim = kubelet_shim(node)
    drv = dra_driver(_cfg(host, selectors=[{"pfNames": ["enp23s0f0"]}], hotplug=True), shim)
    shim.wait_registered(DRIVER, timeout=90)

    def names():
        return sorted(d["name"] for s in _slices(k8s_objects, DRIVER, node) for d in s["spec"].get("devices", []))

    four = [f"vf-0000-17-01-{i}" for i in range(4)]
    wait_for(lambda: names() == four, 60, "4 VFs published", proc=drv)
    t = HostTree(host)
    vfs = [f"0000:17:01.{i}" for i in range(5)]
    t.pci_function(vfs[-1], parent="pci0000:16/0000:16:01.0", vendor="8086", device="1889", class_code="020000",
                   driver="iavf", numa_node=0, iommu_group=21)
    t.sriov("0000:17:00.0", vfs)
    with open(target, "w") as f:
        f.write("change")
    wait_for(lambda: "vf-0000-17-01-4" in names(), 30, "the new VF published", proc=drv)
    (host / "sys/bus/pci/devices/0000:17:01.4").unlink()
    (t.device_dir("0000:17:00.0") / "virtfn4").unlink()
    with open(target, "w") as f:
        f.write("change")
    wait_for(lambda: names() == four, 30, "the removed VF unpublished", proc=drv)
    assert "hot-plug events unavailable" not in drv.logs() and drv.runs == 1
