"""End to end with the built-in NVIDIA backend on the sample DGX H100 host (fake NVML):
claims for an H100 by productName and memory and for a 1g.10gb MIG partition are allocated by
the real allocator, prepared through the kubelet's DRA code with the right CDI device nodes,
and an injected XID taints exactly the affected device until it recovers."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from dra_framework.cdi.testing import assert_valid_cdi_dir

from dra_framework.testing import wait_for
from test_e2e_example import config, slices_of

pytestmark = pytest.mark.k8s

ROOT = Path(__file__).resolve().parents[2]
HOST = ROOT / "examples" / "hosts" / "dgx-h100"
DRIVER = "gpu.nvidia.com"


def devices_by_name(objects, node):
    return {d["name"]: d for s in slices_of(objects, DRIVER, node) for d in s["spec"].get("devices", [])}


def test_nvidia_gpu_and_mig_claims_and_xid_taints(kube_apiserver, k8s_objects, kubelet_shim, allocator,
                                                   cdi_check, dra_driver):
    node = "e2e-dgx"
    shim = kubelet_shim(node)
    cfg = config([{"name": "nvidia", "options": {
        "nvml": "fake", "hostRoot": str(HOST), "driverRoot": str(HOST), "hostDriverRoot": "/",
        "migStrategy": "dynamic", "executor": "record", "xidQuietPeriodSeconds": 4, "eventWaitMs": 200}}],
        driver=DRIVER)
    daemon = dra_driver(cfg, shim)
    shim.wait_registered(DRIVER, timeout=90)
    # Wait for all 8 GPUs, not 8 devices: the pool's slices are written one after another.
    devs = wait_for(lambda: (lambda d: d if sum(1 for x in d.values() if x["attributes"]["type"]["string"] == "gpu")
                             >= 8 else None)(devices_by_name(k8s_objects, node)), 90, "NVIDIA slices", proc=daemon)
    gpus = {n: d for n, d in devs.items() if d["attributes"]["type"]["string"] == "gpu"}
    assert len(gpus) == 8

    k8s_objects.device_class("gpu.nvidia.com", DRIVER, cel=f"device.attributes['{DRIVER}'].type == 'gpu'")
    k8s_objects.device_class("mig.nvidia.com", DRIVER, cel=f"device.attributes['{DRIVER}'].type == 'mig'")
    k8s_objects.resource_claim("default", "h100", {"devices": {"requests": [{"name": "gpu", "exactly": {
        "deviceClassName": "gpu.nvidia.com", "selectors": [{"cel": {"expression":
            f"device.attributes['{DRIVER}'].productName == 'NVIDIA H100 80GB HBM3' && "
            f"device.capacity['{DRIVER}'].memory.compareTo(quantity('80Gi')) >= 0"}}]}}]}})
    k8s_objects.resource_claim("default", "mig", {"devices": {"requests": [{"name": "mig", "exactly": {
        "deviceClassName": "mig.nvidia.com", "selectors": [{"cel": {"expression":
            f"device.attributes['{DRIVER}'].profile == '1g.10gb'"}}]}}]}})
    k8s_objects.pod("default", "trainer", claims=["h100", "mig"], node=node)
    gpu_dev = allocator.allocate("default", "h100", node, pod=("default", "trainer"))["devices"]["results"][0]["device"]
    mig_dev = allocator.allocate("default", "mig", node, pod=("default", "trainer"))["devices"]["results"][0]["device"]
    assert gpu_dev in gpus and "-mig-1g10gb-" in mig_dev
    assert not mig_dev.startswith(gpu_dev + "-"), "counters must keep a MIG partition off the allocated GPU"

    prepared = shim.prepare_pod("default", "trainer")
    edits = cdi_check(daemon.cdi_dir, prepared["h100"] + prepared["mig"])
    assert_valid_cdi_dir(daemon.cdi_dir)  # schema + the Go library's extra rules, mode 0644
    text = json.dumps(edits)
    assert "/dev/nvidiactl" in text and "/dev/nvidia-uvm" in text
    assert "/dev/nvidia-caps/nvidia-cap" in text, "MIG capability device nodes missing"
    assert "NVIDIA_VISIBLE_DEVICES=void" in text

    # An XID on the allocated GPU taints exactly that device, then clears after the quiet period.
    uuid = gpus[gpu_dev]["attributes"]["uuid"]["string"]
    inject = daemon.state_dir / DRIVER / "nvidia" / "fake-nvml" / "inject"
    inject.mkdir(parents=True, exist_ok=True)
    (inject / "xid.json").write_text(json.dumps({"kind": "xid", "uuid": uuid, "xid": 79}))

    def tainted():
        return {n: d["taints"] for n, d in devices_by_name(k8s_objects, node).items() if d.get("taints")}

    t = wait_for(lambda: tainted(), 60, "XID taint", proc=daemon)
    # A GPU-wide XID (79: fallen off the bus) also makes that GPU's MIG partitions unusable; no
    # device of any other GPU is touched.
    assert set(t) == {gpu_dev} | {n for n in devs if n.startswith(gpu_dev + "-mig-")}, t
    assert t[gpu_dev][0]["key"] == "gpu.nvidia.com/xid" and t[gpu_dev][0]["value"] == "79"
    assert t[gpu_dev][0]["effect"] == "NoSchedule"
    health = shim.health("default", "trainer")
    assert "Unhealthy" in json.dumps(health), health
    wait_for(lambda: not tainted(), 60, "taint removal after recovery", proc=daemon)

    # An application-level XID (43) on the MIG instance: an informational taint (effect None) on
    # exactly that MIG device, which stays Healthy for the kubelet, with the XID as message.
    state = json.loads((daemon.state_dir / DRIVER / "nvidia" / "fake-nvml" / "state.json").read_text())
    parent, gpu_state = next((u, g) for u, g in state.items() if g["gis"])
    gi_id = next(iter(gpu_state["gis"]))
    ci_id = next(iter(gpu_state["gis"][gi_id]["cis"]))
    (inject / "xid43.json").write_text(json.dumps({"kind": "xid", "uuid": parent, "xid": 43,
                                                    "gi": int(gi_id), "ci": int(ci_id)}))
    minor = int(str(kube_apiserver.version).lstrip("v").split(".")[1])

    def mig_health():
        entries = shim.health("default", "trainer")["containers"]["ctr"]
        return next(e for e in entries if e["name"] == "claim:mig")["resources"][0]

    if minor >= 35:
        t = wait_for(lambda: tainted(), 60, "MIG-scoped XID taint", proc=daemon)
        assert set(t) == {mig_dev} and t[mig_dev][0]["effect"] == "None", t
    else:
        # 1.34 has no taint effect None: the informational taint is left out, and the device
        # stays published (it must never vanish from the pool because of a taint).
        wait_for(lambda: "does not support left out" in daemon.logs(), 60, "the left-out taint warning", proc=daemon)
        assert mig_dev in devices_by_name(k8s_objects, node) and not tainted()
    if minor >= 36:  # health messages reach the kubelet from 1.36 on
        h = wait_for(lambda: (lambda r: r if "XID 43" in r.get("message", "") else None)(mig_health()), 30,
                     "the XID in the kubelet's health message", proc=daemon)
        assert h["health"] == "Healthy", h
    else:
        assert mig_health()["health"] == "Healthy"

    shim.unprepare_pod("default", "trainer")
    assert not list(daemon.cdi_dir.glob("*trainer*"))
    assert not [f for f in daemon.cdi_dir.iterdir() if prepared.claims["mig"]["uid"] in f.name]
