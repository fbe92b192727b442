"""End to end through the real product: ``dra-framework run`` publishes slices to a real
kube-apiserver, the scheduler's allocator allocates a claim by CEL, the kubelet's own DRA code
prepares the pod, the reference CDI library resolves the IDs, unprepare cleans up; plus driver
and kubelet restarts between prepare and unprepare."""
from __future__ import annotations

import json
import os

import pytest

from dra_framework.cdi.testing import assert_valid_cdi_dir

from dra_framework.testing import pools_complete, wait_for

pytestmark = pytest.mark.k8s

DRIVER = "example.dra.dev"


def slices_of(objects, driver: str, node: str) -> list[dict]:
    from lightkube.resources.resource_v1 import ResourceSlice as RS
    out = []
    for s in objects.client.list(RS, fields={"spec.driver": driver}):
        d = s.to_dict() if hasattr(s, "to_dict") else dict(s)
        if d["spec"].get("nodeName") == node:
            out.append(d)
    return out


def complete_slices_of(objects, driver: str, node: str) -> list[dict]:
    """The driver's slices on ``node`` once every pool is complete, else []: the allocator
    treats devices of an incomplete pool as unavailable, so tests wait for this, not for the
    first slice."""
    out = slices_of(objects, driver, node)
    return out if pools_complete(out) else []


def config(*args, driver: str = DRIVER) -> dict:
    """``config(backends, driver=...)``: a composed-driver config; the ``dra_driver`` fixture adds
    node, kubelet root, dirs and ports. The older ``config(shim, kube_apiserver, tmp_path, node,
    backends)`` for the deprecated ``daemons`` fixture also sets those itself."""
    *harness, backends = args
    cfg = {"janitorIntervalSeconds": 5, "drivers": [{"name": driver, "backends": backends}]}
    if harness:
        shim, cp, tmp_path, node = harness
        cfg.update(nodeName=node, kubeletRootDir=str(shim.root), cdiRoot=str(tmp_path / "cdi"),
                   stateDir=str(tmp_path / "state"), kubeconfig=str(cp.kubeconfig))
    return cfg


def test_example_driver_end_to_end(kube_apiserver, k8s_objects, kubelet_shim, allocator, cdi_check,
                                   dra_driver):
    node = "e2e-example"
    shim = kubelet_shim(node)
    daemon = dra_driver(config([{"name": "example", "options": {"count": 2}}]), shim)
    shim.wait_registered(DRIVER, timeout=60)

    def names() -> set[str]:  # the pool's slices are written one after another (counters first)
        return {d["name"] for s in slices_of(k8s_objects, DRIVER, node) for d in s["spec"].get("devices", [])}

    assert wait_for(lambda: {"acc-0", "acc-1", "acc-1-half-0", "acc-1-half-1"} <= names(), 60, "ResourceSlices",
                    proc=daemon)

    k8s_objects.device_class("example-acc", DRIVER)
    k8s_objects.resource_claim("default", "half", {"devices": {"requests": [{
        "name": "acc", "exactly": {"deviceClassName": "example-acc", "selectors": [{"cel": {"expression":
            f"device.attributes['{DRIVER}'].partition == true && device.attributes['{DRIVER}'].index == 1"}}]}}],
        "config": [{"opaque": {"driver": DRIVER, "parameters": {
            "apiVersion": "example.dra.dev/v1", "kind": "ExampleConfig", "mode": "fast"}}}]}})
    k8s_objects.pod("default", "p-half", claims=["half"], node=node)
    result = allocator.allocate("default", "half", node, pod=("default", "p-half"))
    dev = result["devices"]["results"][0]["device"]
    assert dev.startswith("acc-1-half-")

    prepared = shim.prepare_pod("default", "p-half")
    ids = prepared["half"]
    assert len(ids) == 1 and ids[0].startswith(f"k8s.{DRIVER}/claim=")
    edits = cdi_check(daemon.cdi_dir, ids)
    assert_valid_cdi_dir(daemon.cdi_dir)  # schema + the Go library's extra rules, mode 0644
    assert "EXAMPLE_MODE=fast" in json.dumps(edits)
    assert f"EXAMPLE_DEVICE={dev}" in json.dumps(edits)
    claim_uid = prepared.claims["half"]["uid"]
    spec_files = [f for f in os.listdir(daemon.cdi_dir) if claim_uid in f]
    assert len(spec_files) == 1

    # The driver restarts between prepare and unprepare: state comes from the checkpoint.
    assert daemon.stop() == 0, daemon.logs()
    shim.wait_deregistered(DRIVER)
    daemon.start()
    shim.wait_registered(DRIVER, timeout=60)
    # The kubelet shim restarts too: the running driver registers again.
    shim.restart()
    shim.wait_registered(DRIVER, timeout=60)
    again = shim.prepare_pod("default", "p-half")  # idempotent: same IDs, spec re-ensured
    # Sets: the 1.34 kubelet records a restored claim's CDI IDs twice (fixed in later releases).
    assert set(again["half"]) == set(ids)

    shim.unprepare_pod("default", "p-half")
    assert not [f for f in os.listdir(daemon.cdi_dir) if claim_uid in f]
    assert daemon.checkpoint() == {}
    partitions = daemon.state_dir / DRIVER / "example" / "partitions"
    assert not any(partitions.iterdir()) if partitions.exists() else True


def test_deleted_slices_come_back_and_uninstall_removes_them(kube_apiserver, k8s_objects, kubelet_shim,
                                                             dra_driver):
    from lightkube.resources.resource_v1 import ResourceSlice as RS
    node = "e2e-heal"
    shim = kubelet_shim(node)
    cfg = config([{"name": "example", "options": {"count": 1}}], driver="heal.dra.dev")
    cfg["sliceResyncSeconds"] = 5
    daemon = dra_driver(cfg, shim)
    first = wait_for(lambda: complete_slices_of(k8s_objects, "heal.dra.dev", node), 60, "slices", proc=daemon)
    for s in first:
        k8s_objects.client.delete(RS, s["metadata"]["name"])
    back = wait_for(lambda: [s for s in slices_of(k8s_objects, "heal.dra.dev", node)
                             if s["metadata"]["name"] not in {f["metadata"]["name"] for f in first}],
                    60, "slices to come back", proc=daemon)
    assert back
    # A plain restart keeps the slices; --uninstall deletes them.
    assert daemon.stop() == 0, daemon.logs()
    daemon.start().wait_running()
    assert slices_of(k8s_objects, "heal.dra.dev", node)
    daemon.stop()
    uninstall = daemon.clone("uninstall", args=("--uninstall",)).start()
    # Ready = the API server was reached and the slice controller runs (it starts in the background).
    uninstall.wait_ready()
    assert uninstall.stop() == 0, uninstall.logs()
    assert not slices_of(k8s_objects, "heal.dra.dev", node), uninstall.logs()


def test_uninstall_before_the_node_lookup_finished_still_removes_the_slices(kube_apiserver, k8s_objects,
                                                                            kubelet_shim, dra_driver):
    """Slice publishing waits for the Node UID in the background; a ``--uninstall`` run stopped
    while it waits (here: the Node object is gone) must still delete this driver's slices."""
    from lightkube.resources.core_v1 import Node
    node = "e2e-uninstall-early"
    shim = kubelet_shim(node)
    cfg = config([{"name": "example", "options": {"count": 1}}], driver="early.dra.dev")
    daemon = dra_driver(cfg, shim)
    wait_for(lambda: complete_slices_of(k8s_objects, "early.dra.dev", node), 60, "slices", proc=daemon)
    assert daemon.stop() == 0, daemon.logs()
    k8s_objects.client.delete(Node, node)
    uninstall = daemon.clone("uninstall", args=("--uninstall",)).start().wait_running()
    wait_for(lambda: "not found" in uninstall.logs(), 30, "the Node lookup to fail", proc=uninstall)
    assert uninstall.stop() == 0, uninstall.logs()
    assert not slices_of(k8s_objects, "early.dra.dev", node), uninstall.logs()
