"""The harness control plane: real etcd + kube-apiserver with DRA fully enabled."""
import pytest

pytestmark = pytest.mark.k8s


def test_serves_resource_v1(kube_apiserver, k8s_version):
    group = kube_apiserver.get("/apis/resource.k8s.io")
    versions = {v["version"] for v in group["versions"]}
    assert "v1" in versions
    assert group["preferredVersion"]["version"] == "v1"
    # Every version the build script found in the apiserver's storage wiring is served.
    expected = set((kube_apiserver.bins / "resource-api-versions.txt").read_text().split())
    assert expected <= versions
    resources = {r["name"] for r in kube_apiserver.get("/apis/resource.k8s.io/v1")["resources"]}
    assert {"resourceslices", "deviceclasses", "resourceclaims", "resourceclaims/status"} <= resources
    # The version stamp is in place (ldflags), so version-dependent code sees the real version.
    assert kube_apiserver.get("/version")["gitVersion"] == f"v{k8s_version}"


def test_lightkube_client_and_objects(kube_apiserver, k8s_node, pod):
    from lightkube.resources.core_v1 import Node

    node = k8s_node("node-api")
    assert node["metadata"]["uid"]
    assert kube_apiserver.client().get(Node, "node-api").metadata.uid == node["metadata"]["uid"]
    p = pod("harness-api", "p1", node="node-api")
    assert p["spec"]["nodeName"] == "node-api"
