"""``dra-framework explain --kubeconfig`` against a real apiserver (the harness's), with a
ServiceAccount that may only get/list what explain reads (docs/explain.md, "Live cluster")."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.k8s
REPO = Path(__file__).resolve().parents[2]
NS = "explain-live"
DRIVER = "live.example.com"
# what explain reads: lists of classes, slices, claims, templates and nodes; named pods and claims
READER_RULES = [
    {"apiGroups": ["resource.k8s.io"], "resources": ["deviceclasses", "resourceslices", "resourceclaims",
                                                      "resourceclaimtemplates"], "verbs": ["get", "list"]},
    {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
]


def _token_kubeconfig(cp: Any, sa: str, path: Path) -> Path:
    """A kubeconfig of the harness cluster whose only credential is a token of ServiceAccount ``sa``."""
    from lightkube.models.authentication_v1 import TokenRequestSpec
    from lightkube.models.meta_v1 import ObjectMeta
    from lightkube.resources.core_v1 import ServiceAccountToken

    token = cp.client().create(ServiceAccountToken(metadata=ObjectMeta(), spec=TokenRequestSpec(
        audiences=[], expirationSeconds=3600)), sa, namespace=NS).status.token
    cfg = json.loads(Path(cp.kubeconfig).read_text())
    cfg["users"] = [{"name": "sa", "user": {"token": token}}]
    cfg["contexts"] = [{"name": "harness", "context": {"cluster": cfg["clusters"][0]["name"], "user": "sa"}}]
    cfg["current-context"] = "harness"
    path.write_text(json.dumps(cfg))
    os.chmod(path, 0o600)
    return path


@pytest.fixture
def live(kube_apiserver, k8s_objects, tmp_path) -> dict[str, Path]:
    from lightkube.resources.resource_v1 import ResourceClaim

    k8s_objects.namespace(NS)
    k8s_objects.device_class("live", DRIVER)
    k8s_objects.resource_slice({"driver": DRIVER, "nodeName": "node-1",
                                "pool": {"name": "node-1", "generation": 1, "resourceSliceCount": 1},
                                "devices": [{"name": f"dev-{i}", "attributes": {"index": {"int": i}}}
                                            for i in range(3)]})
    # another team's claim holds dev-0: it is in use for the claims explained here
    k8s_objects.resource_claim(NS, "held", {"devices": {"requests": [{"name": "r", "exactly": {"deviceClassName": "live"}}]}})
    kube_apiserver.client().patch(ResourceClaim.Status, "held", {"status": {"allocation": {"devices": {"results": [
        {"request": "r", "driver": DRIVER, "pool": "node-1", "device": "dev-0"}]}}}}, namespace=NS)
    for name, count in (("two", 2), ("three", 3)):
        k8s_objects.resource_claim(NS, name, {"devices": {"requests": [
            {"name": "gpus", "exactly": {"deviceClassName": "live", "count": count}}]}})
    for sa, rules in (("explain-reader", READER_RULES), ("nobody", [])):
        k8s_objects.create({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": sa, "namespace": NS}})
        if rules:
            k8s_objects.create({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                                "metadata": {"name": sa}, "rules": rules})
            k8s_objects.create({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                                "metadata": {"name": sa},
                                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": sa},
                                "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": NS}]})
    return {sa: _token_kubeconfig(kube_apiserver, sa, tmp_path / f"{sa}.kubeconfig") for sa in ("explain-reader", "nobody")}


def explain(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dra_framework.cli", "explain", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def test_live_cluster_claim_by_name_with_a_read_only_identity(live):
    r = explain("--kubeconfig", str(live["explain-reader"]), "-n", NS, "resourceclaim/two", "-o", "json")
    assert r.returncode == 0, r.stdout + r.stderr
    (c,) = json.loads(r.stdout)["claims"]
    assert c["claim"] == f"{NS}/two" and c["satisfiable"] and c["node"] == "node-1"
    assert [x["device"] for x in c["allocation"]["devices"]["results"]] == ["dev-1", "dev-2"]
    held = next(d for d in c["requests"][0]["devices"] if d["device"] == f"{DRIVER}/node-1/dev-0")
    assert held["reason"] == "allocated" and f"{NS}/held" in held["detail"]

    # --node: the API server is shared with other tests, whose nodes are explained too otherwise
    r = explain("--kubeconfig", str(live["explain-reader"]), "--node", "node-1", f"resourceclaim/{NS}/three")
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"ResourceClaim {NS}/three: NOT SATISFIABLE on node node-1" in r.stdout
    assert "request gpus: needs 3 device(s), 2 match and are free" in r.stdout


def test_live_cluster_without_read_access_is_bad_input(live):
    r = explain("--kubeconfig", str(live["nobody"]), "-n", NS, "resourceclaim/two")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "GET apis/resource.k8s.io/v1/deviceclasses" in r.stderr and "forbidden" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.fixture
def kube_scheduler(harness_bins, kube_apiserver, tmp_path):
    """The harness's kube-scheduler (upstream cmd/kube-scheduler) against the test apiserver."""
    import yaml

    from dra_framework.testing.k8s import Process

    binary = harness_bins / "kube-scheduler"
    if not binary.exists():
        pytest.skip(f"{binary} is missing: run scripts/build-harness.sh")
    cfg = tmp_path / "kube-scheduler.yaml"
    cfg.write_text(yaml.safe_dump({
        "apiVersion": "kubescheduler.config.k8s.io/v1", "kind": "KubeSchedulerConfiguration",
        "clientConnection": {"kubeconfig": str(kube_apiserver.kubeconfig)}, "leaderElection": {"leaderElect": False}}))
    proc = Process("kube-scheduler", [str(binary), f"--config={cfg}", "--secure-port=0",
                                      f"--feature-gates={kube_apiserver.feature_gates}", "--v=2"],
                   tmp_path / "logs" / "kube-scheduler.log")
    yield proc
    proc.stop()


def _ready_node(client: Any, name: str) -> None:
    """What kube-scheduler's fit checks need from a node that has no kubelet."""
    import time

    from lightkube.resources.core_v1 import Node
    from lightkube.types import PatchType

    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    res = {"cpu": "4", "memory": "8Gi", "pods": "110"}
    client.patch(Node.Status, name, {"status": {"capacity": res, "allocatable": res, "conditions": [
        {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "harness",
         "lastHeartbeatTime": now, "lastTransitionTime": now}]}})
    # TaintNodesByCondition taints a new Node not-ready; no node controller lifts it here
    client.patch(Node, name, {"spec": {"taints": None}}, patch_type=PatchType.MERGE)


def test_a_pods_claims_as_kube_scheduler_allocates_them(kube_apiserver, k8s_objects, request, tmp_path):
    """Two claims of one pod compete for device ``a`` (the second fits only ``a``): kube-scheduler
    allocates them together, and explain, run before the scheduler, proposes the same devices."""
    from lightkube.resources.core_v1 import Pod

    from dra_framework.testing import wait_for

    node, driver = "explain-sched", "sched.example.com"
    k8s_objects.namespace(NS)
    k8s_objects.node(node)
    client = kube_apiserver.client()
    _ready_node(client, node)
    k8s_objects.device_class("sched", driver)
    k8s_objects.resource_slice({"driver": driver, "nodeName": node,
                                "pool": {"name": node, "generation": 1, "resourceSliceCount": 1},
                                "devices": [{"name": "a", "attributes": {"big": {"bool": True}}},
                                            {"name": "b", "attributes": {"big": {"bool": False}}}]})
    k8s_objects.resource_claim(NS, "any", {"devices": {"requests": [{"name": "r", "exactly": {"deviceClassName": "sched"}}]}})
    k8s_objects.resource_claim(NS, "big", {"devices": {"requests": [{"name": "r", "exactly": {
        "deviceClassName": "sched", "selectors": [{"cel": {"expression": f'device.attributes["{driver}"].big'}}]}}]}})
    k8s_objects.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": NS},
                        "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}],
                                 "resourceClaims": [{"name": "one", "resourceClaimName": "any"},
                                                    {"name": "two", "resourceClaimName": "big"}]}})
    r = explain("--kubeconfig", str(kube_apiserver.kubeconfig), "-n", NS, "pod/p", "--node", node, "-o", "json")
    assert r.returncode == 0, r.stdout + r.stderr
    mine = {c["claim"]: [x["device"] for x in c["allocation"]["devices"]["results"]] for c in json.loads(r.stdout)["claims"]}
    assert mine == {f"{NS}/any": ["b"], f"{NS}/big": ["a"]}

    sched = request.getfixturevalue("kube_scheduler")
    wait_for(lambda: client.get(Pod, "p", namespace=NS).spec.nodeName, 120, "kube-scheduler to bind the pod", proc=sched)
    got = {f"{NS}/{n}": [x["device"] for x in k8s_objects.get("ResourceClaim", n, NS)["status"]["allocation"]["devices"]["results"]]
           for n in ("any", "big")}
    assert got == mine
