"""Extended-resource compatibility (DRAExtendedResource): a pod asking for ``nvidia.com/gpu: 1``,
with no ResourceClaim of its own, gets an H100 through DRA.

Only kube-scheduler turns such a request into a claim (its DynamicResources plugin creates the
ResourceClaim, allocates it and records it in ``pod.status.extendedResourceClaimStatus``), so
this test runs the real kube-scheduler of the harness version against the apiserver; the
kubelet's DRA manager then prepares the claim and maps the container's extended resource to the
CDI devices, as on a node."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
import yaml

from dra_framework.testing import wait_for
from dra_framework.testing.k8s import Process
from test_e2e_example import config, slices_of

pytestmark = pytest.mark.k8s

ROOT = Path(__file__).resolve().parents[2]
HOST = ROOT / "examples" / "hosts" / "dgx-h100"
DRIVER = "gpu.nvidia.com"


def chart_device_class(kube_version: str, gate_forced: bool) -> dict:
    """The chart's gpu.nvidia.com DeviceClass as `helm template` renders it for this version."""
    sys.path.insert(0, str(ROOT / "tests" / "deploy"))
    from chart import helm_path, render

    if not os.access(helm_path(), os.X_OK):
        pytest.skip(f"helm missing at {helm_path()}: run scripts/build-helm.sh")
    objs = render(kube_version=kube_version, sets=["extendedResourceNames=true"] if gate_forced else [])
    return next(o for o in objs if o["kind"] == "DeviceClass" and o["metadata"]["name"] == "gpu.nvidia.com")


def _gate_on(cp, gate: str) -> bool:
    minor = int(str(cp.version).lstrip("v").split(".")[1])
    return f"{gate}=true" in cp.feature_gates or (gate == "DRAExtendedResource" and minor >= 37)  # GA, locked


@pytest.fixture
def kube_scheduler(harness_bins, kube_apiserver, tmp_path):
    """The harness's kube-scheduler (upstream cmd/kube-scheduler) against the test apiserver."""
    binary = harness_bins / "kube-scheduler"
    if not binary.exists():
        msg = f"{binary} is missing: run scripts/build-harness.sh (it builds kube-scheduler since this test exists)"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    cfg = tmp_path / "kube-scheduler.yaml"
    cfg.write_text(yaml.safe_dump({
        "apiVersion": "kubescheduler.config.k8s.io/v1", "kind": "KubeSchedulerConfiguration",
        "clientConnection": {"kubeconfig": str(kube_apiserver.kubeconfig)},
        "leaderElection": {"leaderElect": False}}))
    proc = Process("kube-scheduler", [str(binary), f"--config={cfg}", "--secure-port=0",
                                      f"--feature-gates={kube_apiserver.feature_gates}", "--v=2"],
                   tmp_path / "logs" / "kube-scheduler.log")
    yield proc
    proc.stop()


def test_extended_resource_nvidia_gpu_through_dra(kube_apiserver, k8s_objects, kubelet_shim, dra_driver,
                                                  cdi_check, request):
    if not _gate_on(kube_apiserver, "DRAExtendedResource"):
        pytest.skip(f"Kubernetes {kube_apiserver.version} has no DRAExtendedResource gate")
    from lightkube.resources.core_v1 import Node, Pod
    from lightkube.types import PatchType

    node = "e2e-extres"
    shim = kubelet_shim(node)
    client = kube_apiserver.client()
    # The scheduler's fit checks need what a kubelet would report; no GPU in allocatable: the
    # extended resource is backed by the DeviceClass, not by a device plugin.
    res = {"cpu": "16", "memory": "64Gi", "pods": "110"}
    client.patch(Node.Status, node, {"status": {"capacity": res, "allocatable": res, "conditions": [
        {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "harness",
         "lastHeartbeatTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
         "lastTransitionTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}]}})
    # The apiserver's TaintNodesByCondition admission taints a new Node not-ready; without a node
    # controller nobody lifts it.
    client.patch(Node, node, {"spec": {"taints": None}}, patch_type=PatchType.MERGE)
    cfg = config([{"name": "nvidia", "options": {
        "nvml": "fake", "hostRoot": str(HOST), "driverRoot": str(HOST), "hostDriverRoot": "/",
        "migStrategy": "none", "executor": "record", "healthCheck": False}}], driver=DRIVER)
    daemon = dra_driver(cfg, shim)
    shim.wait_registered(DRIVER, timeout=90)
    wait_for(lambda: sum(len(s["spec"].get("devices", [])) for s in slices_of(k8s_objects, DRIVER, node)) >= 8,
             90, "8 GPUs published", proc=daemon)
    # The chart's DeviceClass: with extendedResourceName by default from 1.36 on; the harness runs
    # 1.34/1.35 with the alpha gate on, which the chart's extendedResourceNames=true is for.
    version = str(kube_apiserver.version).lstrip("v")
    minor = int(version.split(".")[1])
    dc = chart_device_class(version, gate_forced=minor < 36)
    assert dc["spec"]["extendedResourceName"] == "nvidia.com/gpu"
    if minor < 36:
        assert "extendedResourceName" not in chart_device_class(version, gate_forced=False)["spec"]
    k8s_objects.create(dc)
    sched = request.getfixturevalue("kube_scheduler")
    k8s_objects.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "cuda", "namespace": "default"},
                        "spec": {"containers": [{"name": "ctr", "image": "registry.k8s.io/pause:3.10",
                                                 "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}})

    def scheduled():
        p = client.get(Pod, "cuda", namespace="default").to_dict()
        st = (p.get("status") or {}).get("extendedResourceClaimStatus")
        return p if p["spec"].get("nodeName") and st else None

    pod = wait_for(scheduled, 120, "the scheduler to bind the pod with an extended-resource claim", proc=sched)
    assert pod["spec"]["nodeName"] == node
    st = pod["status"]["extendedResourceClaimStatus"]
    claim = k8s_objects.get("ResourceClaim", st["resourceClaimName"], "default")
    results = claim["status"]["allocation"]["devices"]["results"]
    assert len(results) == 1 and results[0]["driver"] == DRIVER and results[0]["device"].startswith("gpu-"), results
    assert claim["metadata"]["annotations"]["resource.kubernetes.io/extended-resource-claim"] == "true"

    prepared = shim.prepare_pod("default", "cuda")
    ids = prepared.containers["ctr"]
    assert ids, prepared  # the kubelet maps nvidia.com/gpu of the container to the claim's CDI devices
    edits = cdi_check(daemon.cdi_dir, ids)
    assert "/dev/nvidia" in str(edits)
    shim.unprepare_pod("default", "cuda")
    assert not [f for f in daemon.cdi_dir.iterdir() if claim["metadata"]["uid"] in f.name]
