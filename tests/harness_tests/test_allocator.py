"""dra-allocator: the scheduler's structured allocator against live API objects."""
import pytest

from dra_framework.testing.k8s import AllocationFailed

pytestmark = pytest.mark.k8s

DRIVER = "gpu.harness.example.com"
NS = "harness-alloc"


def slice_spec(node: str) -> dict:
    return {
        "driver": DRIVER, "nodeName": node,
        "pool": {"name": node, "generation": 1, "resourceSliceCount": 1},
        "devices": [
            {"name": "gpu-0", "attributes": {"model": {"string": "a100"}}, "capacity": {"memory": {"value": "40Gi"}}},
            {"name": "gpu-1", "attributes": {"model": {"string": "h100"}}, "capacity": {"memory": {"value": "80Gi"}}},
        ],
    }


def claim_spec(model: str) -> dict:
    return {"devices": {"requests": [{"name": "gpu", "exactly": {
        "deviceClassName": "harness-gpu",
        "selectors": [{"cel": {"expression": f'device.attributes["{DRIVER}"].model == "{model}"'}}],
    }}]}}


@pytest.fixture
def gpu_node(k8s_node, resource_slice, device_class):
    k8s_node("node-alloc")
    resource_slice(slice_spec("node-alloc"))
    device_class("harness-gpu", DRIVER)
    return "node-alloc"


def test_allocates_with_cel_and_reserves_for_pod(gpu_node, resource_claim, pod, allocator, k8s_objects):
    resource_claim(NS, "want-h100", claim_spec("h100"))
    p = pod(NS, "consumer", claims=["want-h100"], node=gpu_node)

    allocation = allocator.allocate(NS, "want-h100", gpu_node, pod=(NS, "consumer"))

    [result] = allocation["devices"]["results"]
    assert (result["driver"], result["pool"], result["device"], result["request"]) == (DRIVER, gpu_node, "gpu-1", "gpu")
    # Written like the scheduler: allocation + reservedFor + the delete-protection finalizer.
    claim = k8s_objects.get("ResourceClaim", "want-h100", NS)
    assert claim["status"]["allocation"]["devices"]["results"][0]["device"] == "gpu-1"
    assert claim["status"]["reservedFor"] == [{"resource": "pods", "name": "consumer", "uid": p["metadata"]["uid"]}]
    assert "resource.kubernetes.io/delete-protection" in claim["metadata"]["finalizers"]

    # The device is now in use: a second claim for it cannot be allocated.
    resource_claim(NS, "want-h100-again", claim_spec("h100"))
    with pytest.raises(AllocationFailed, match="cannot be allocated on node node-alloc"):
        allocator.allocate(NS, "want-h100-again", gpu_node)


def test_unsatisfiable_claim_fails_clearly(gpu_node, resource_claim, allocator, k8s_objects):
    resource_claim(NS, "want-b200", claim_spec("b200"))
    with pytest.raises(AllocationFailed, match="want-b200 cannot be allocated on node node-alloc"):
        allocator.allocate(NS, "want-b200", gpu_node)
    assert "allocation" not in (k8s_objects.get("ResourceClaim", "want-b200", NS).get("status") or {})


def test_cel_runtime_error_is_reported(gpu_node, resource_claim, allocator):
    # Compiles (so the apiserver accepts it) but fails at evaluation: no such attribute.
    # The scheduler treats that as an error of the claim, not as "does not fit".
    spec = claim_spec("h100")
    spec["devices"]["requests"][0]["exactly"]["selectors"][0]["cel"]["expression"] = (
        f'device.attributes["{DRIVER}"].nosuch == "x"')
    resource_claim(NS, "bad-cel", spec)
    with pytest.raises(AllocationFailed, match="allocator error"):
        allocator.allocate(NS, "bad-cel", gpu_node)


def test_wait_slices_waits_for_every_slice_of_the_pool(k8s_node, k8s_objects, allocator, device_class,
                                                      resource_claim):
    """A driver writes a pool's slices one by one; ``wait_slices`` returns only once the pool is
    complete (the scheduler's allocator of 1.37 refuses an incomplete one; 1.34's does not)."""
    node = "node-wait-slices"
    k8s_node(node)
    device_class("harness-wait", DRIVER)
    resource_claim(NS, "early", {"devices": {"requests": [{"name": "gpu", "exactly": {
        "deviceClassName": "harness-wait"}}]}})
    first = slice_spec(node)
    first["pool"]["resourceSliceCount"] = 2
    k8s_objects.resource_slice(first, name=f"{node}-a")
    with pytest.raises(TimeoutError, match=f"ResourceSlices of {DRIVER} on node {node}"):
        k8s_objects.wait_slices(DRIVER, node, timeout=1)
    second = slice_spec(node)
    second["pool"]["resourceSliceCount"] = 2
    second["devices"] = [{"name": "gpu-2"}]
    k8s_objects.resource_slice(second, name=f"{node}-b")
    got = k8s_objects.wait_slices(DRIVER, node, timeout=10)
    assert sorted(s["metadata"]["name"] for s in got) == [f"{node}-a", f"{node}-b"]
    assert allocator.allocate(NS, "early", node)["devices"]["results"]
