"""Consumable GPU shares end to end (DRAConsumableCapacity): with ``consumableShares: memory`` two
claims of 40Gi share one H100 80GB; the real allocator gives each its own share ID, the kubelet's
DRA code prepares both (one CDI device per share, each with its own memory), a third share that
does not fit is refused by the allocator, and unpreparing one share leaves the other prepared."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from dra_framework.api import quantity_value
from dra_framework.cdi.testing import assert_valid_cdi_dir
from dra_framework.testing import AllocationFailed, wait_for
from test_e2e_example import config, slices_of

pytestmark = pytest.mark.k8s

ROOT = Path(__file__).resolve().parents[2]
HOST = ROOT / "examples" / "hosts" / "dgx-h100"
DRIVER = "gpu.nvidia.com"
BUS = "0000:1b:00.0"
GPU = "gpu-0000-1b-00-0"


def share_claim(k8s_objects, name: str, memory: str) -> None:
    k8s_objects.resource_claim("default", name, {"devices": {"requests": [{"name": "gpu", "exactly": {
        "deviceClassName": "gpu.nvidia.com", "capacity": {"requests": {"memory": memory}},
        "selectors": [{"cel": {"expression": f"device.attributes['resource.kubernetes.io'].pciBusID == '{BUS}'"}}]}}]}})


def test_two_claims_share_one_h100_by_memory(kube_apiserver, k8s_objects, kubelet_shim, allocator, cdi_check,
                                             dra_driver):
    if "DRAConsumableCapacity=true" not in kube_apiserver.feature_gates:
        pytest.skip(f"Kubernetes {kube_apiserver.version} has no DRAConsumableCapacity gate")
    minor = int(str(kube_apiserver.version).lstrip("v").split(".")[1])
    node = "e2e-shares"
    shim = kubelet_shim(node)
    cfg = config([{"name": "nvidia", "options": {
        "nvml": "fake", "hostRoot": str(HOST), "driverRoot": str(HOST), "hostDriverRoot": "/",
        "migStrategy": "none", "executor": "record", "healthCheck": False, "consumableShares": "memory"}}],
        driver=DRIVER)
    daemon = dra_driver(cfg, shim)
    shim.wait_registered(DRIVER, timeout=90)

    def published():
        devs = {d["name"]: d for s in slices_of(k8s_objects, DRIVER, node) for d in s["spec"].get("devices", [])}
        return devs if len(devs) >= 8 else None
    devs = wait_for(published, 90, "8 shared GPUs", proc=daemon)
    gpu = devs[GPU]
    assert gpu["allowMultipleAllocations"] is True
    gi, full = str(1 << 30), str(80 << 30)
    assert gpu["capacity"]["memory"] == {"value": full, "requestPolicy": {
        "default": full, "validRange": {"min": gi, "max": full, "step": gi}}}, gpu["capacity"]

    k8s_objects.device_class("gpu.nvidia.com", DRIVER, cel=f"device.attributes['{DRIVER}'].type == 'gpu'")
    share_claim(k8s_objects, "train", "40Gi")
    share_claim(k8s_objects, "infer", "40Gi")
    share_claim(k8s_objects, "extra", "1Gi")
    results = {}
    for name in ("train", "infer"):
        k8s_objects.pod("default", name, claims=[name], node=node)
        results[name] = allocator.allocate("default", name, node, pod=("default", name))["devices"]["results"][0]
    assert {r["device"] for r in results.values()} == {GPU}
    share_ids = {n: r["shareID"] for n, r in results.items()}
    assert share_ids["train"] and share_ids["infer"] and share_ids["train"] != share_ids["infer"], share_ids
    print(f"shared {GPU}: share IDs {share_ids}")  # shown with pytest -s
    # the server writes the quantity as 40Gi (1.34) or in bytes (1.37)
    assert all(quantity_value(r["consumedCapacity"]["memory"]) == 40 << 30 for r in results.values()), results
    with pytest.raises(AllocationFailed):  # 80Gi of 80Gi are taken
        allocator.allocate("default", "extra", node)

    prepared = {n: shim.prepare_pod("default", n) for n in ("train", "infer")}
    ids = {n: p[n] for n, p in prepared.items()}
    assert ids["train"] != ids["infer"]
    for n, p in prepared.items():
        dev = p.claims[n]["devices"][0]
        assert dev["device"] == GPU
        if minor >= 35:  # share_id is in the kubelet's API from 1.35 on
            assert dev["shareID"] == share_ids[n], dev
    edits = {n: cdi_check(daemon.cdi_dir, ids[n]) for n in ids}
    assert_valid_cdi_dir(daemon.cdi_dir)
    for n in ids:
        env = json.dumps(edits[n])
        assert f"NVIDIA_DRA_SHARE_GPU_0000_1B_00_0={share_ids[n]}" in env, env
        assert "NVIDIA_DRA_SHARE_MEMORY_GPU_0000_1B_00_0=42949672960" in env
        assert "/dev/nvidia" in env
    cp = daemon.checkpoint()
    assert {d["shareId"] for e in cp.values() for d in e["devices"]} == set(share_ids.values())
    claims = {n: k8s_objects.get("ResourceClaim", n, "default") for n in ids}
    for n, c in claims.items():  # status entries per share (keyed by driver/pool/device/shareID)
        st = wait_for(lambda c=c, n=n: (k8s_objects.get("ResourceClaim", n, "default").get("status") or {})
                      .get("devices"), 30, f"status.devices of {n}", proc=daemon)
        assert [(d["device"], d.get("shareID")) for d in st] == [(GPU, share_ids[n])], st

    shim.unprepare_pod("default", "train")
    uid = {n: c["metadata"]["uid"] for n, c in claims.items()}
    assert not [f for f in daemon.cdi_dir.iterdir() if uid["train"] in f.name]
    assert [f for f in daemon.cdi_dir.iterdir() if uid["infer"] in f.name], "the other share must stay prepared"
    assert set(daemon.checkpoint()) == {uid["infer"]}
    shim.unprepare_pod("default", "infer")
    assert not daemon.checkpoint()
