"""kubelet-dra-shim: the kubelet's plugin manager and DRA manager, driven over HTTP."""
import json

import pytest

from dra_framework.testing.k8s import ShimError

from .fake_driver import FakeDriver

pytestmark = pytest.mark.k8s

DRIVER = "fake.harness.example.com"
NS = "harness-shim"


def test_starts_with_empty_registry(kubelet_shim):
    shim = kubelet_shim("node-empty")
    assert (shim.root / "plugins_registry").is_dir() and (shim.root / "plugins").is_dir()
    assert shim.registered() == {"drivers": {}, "rejections": [], "events": []}


def test_rejects_driver_without_supported_service(kubelet_shim):
    shim = kubelet_shim("node-reject")
    drv = FakeDriver(shim.root, DRIVER, {}, versions=("v0.NoSuchService",)).start()
    try:
        with pytest.raises(AssertionError, match="kubelet rejected DRA driver"):
            shim.wait_registered(DRIVER, timeout=20)
        [rejection, *_] = shim.registered()["rejections"]
        assert rejection["driver"] == DRIVER and rejection["error"]
        # The kubelet told the driver why, over NotifyRegistrationStatus.
        assert drv.wait_status()[0] is False
    finally:
        drv.stop()


def test_register_allocate_prepare_unprepare_restart(kubelet_shim, k8s_node, resource_slice, device_class,
                                                     resource_claim, pod, allocator, cdi_check, tmp_path):
    node = "node-shim"
    shim = kubelet_shim(node)
    drv = FakeDriver(shim.root, DRIVER, {"c1": [("req", node, "dev-0")]}).start()
    try:
        info = shim.wait_registered(DRIVER, timeout=30)
        assert info["endpoint"] == str(drv.dra_sock)
        assert drv.wait_status() == (True, "")

        resource_slice({"driver": DRIVER, "nodeName": node, "pool": {"name": node, "generation": 1,
                        "resourceSliceCount": 1}, "devices": [{"name": "dev-0"}]})
        device_class("harness-fake", DRIVER)
        resource_claim(NS, "c1", {"devices": {"requests": [{"name": "req", "exactly": {"deviceClassName": "harness-fake"}}]}})
        p = pod(NS, "p1", claims=["c1"], node=node)
        allocator.allocate(NS, "c1", node, pod=(NS, "p1"))

        prepared = shim.prepare_pod(NS, "p1")
        assert prepared == {"c1": [f"{DRIVER}/dev=dev-0"]}
        assert prepared.containers == {"ctr": [f"{DRIVER}/dev=dev-0"]}
        assert prepared.pod_uid == p["metadata"]["uid"]
        assert len(drv.prepared) == 1

        # No health stream from this driver: the kubelet reports the device as Unknown.
        health = shim.health(NS, "p1")["containers"]["ctr"]
        assert health == [{"name": "claim:c1", "resources": [
            {"resourceID": f"{DRIVER}/dev=dev-0", "health": "Unknown"}]}]

        # The IDs the kubelet would hand to the runtime resolve in a matching CDI spec.
        spec = {"cdiVersion": "0.6.0", "kind": f"{DRIVER}/dev",
                "devices": [{"name": "dev-0", "containerEdits": {"env": ["DEV=0"]}}]}
        (tmp_path / "fake.json").write_text(json.dumps(spec))
        assert cdi_check(tmp_path, prepared.containers["ctr"])["edits"]["env"] == ["DEV=0"]

        # Kubelet restart: the checkpoint is reloaded and the still-running driver registers
        # again. The checkpoint does not record "prepared", so the kubelet calls
        # NodePrepareResources again for the same claim: drivers must be idempotent.
        registrations = sum(e["op"] == "register" for e in shim.registered()["events"])
        assert registrations == 1
        shim.restart()
        shim.wait_registered(DRIVER, timeout=30)
        again = shim.prepare_pod(NS, "p1")
        # Sets: kubelet 1.34 appends the re-prepared devices to the checkpointed ones, so
        # it records the ID twice (1.37.2 records it once).
        assert {k: set(v) for k, v in again.items()} == {"c1": {f"{DRIVER}/dev=dev-0"}}
        assert drv.prepared == [drv.prepared[0]] * 2

        shim.unprepare_pod(NS, "p1")
        assert drv.unprepared == drv.prepared[:1]
        with pytest.raises(ShimError):
            shim.resources(NS, "p1")  # nothing recorded any more
    finally:
        drv.stop()
