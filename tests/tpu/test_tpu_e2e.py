"""End to end with the tpu backend on a copy of the 8-chip v5e sample host: the real daemon
publishes to a real kube-apiserver, the scheduler's allocator places sub-host claims, the
kubelet's DRA code prepares them, the reference CDI library resolves the IDs.

- two claims for a 2x2 shape get disjoint chips and each its own TPU runtime environment;
- a whole-host claim cannot be allocated while they hold chips, and can be after; its prepare
  fails naming a process that has one of its chips open and no prepared claim owns;
- a shape the host does not have (3 chips) cannot be allocated at all;
- a missing device file taints exactly the devices holding that chip, on the kubelet's health
  stream too, and the taints go when it returns;
- a host without a tpu-env file takes its topology from the Node's GKE labels.
Run at every supported Kubernetes version (scripts/test.sh runs it again at 1.34.4)."""
from __future__ import annotations

import json
import re
import shutil

import pytest
from tpu_helpers import DRIVER, build_host

from dra_framework.testing import AllocationFailed, ShimError, wait_for

pytestmark = pytest.mark.k8s
NS = "default"


def _devices(objects, node):
    from lightkube.resources.resource_v1 import ResourceSlice as RS
    out = {}
    for s in objects.client.list(RS, fields={"spec.driver": DRIVER}):
        d = s.to_dict() if hasattr(s, "to_dict") else dict(s)
        if d["spec"].get("nodeName") == node:
            out.update({x["name"]: x for x in d["spec"].get("devices", [])})
    return out


def _config(host, **options):
    return {"janitorIntervalSeconds": 5, "drivers": [{"name": DRIVER, "backends": [{"name": "tpu", "options": {
        "hostRoot": str(host), "readNodeLabels": False, "healthIntervalSeconds": 0.2, **options}}]}]}


def _claim(objects, name, cel):
    objects.resource_claim(NS, name, {"devices": {"requests": [{"name": "tpu", "exactly": {
        "deviceClassName": "tpu", "selectors": [{"cel": {"expression": cel}}]}}]}})


def _delete_claim(objects, name):
    from lightkube.resources.resource_v1 import ResourceClaim
    from lightkube.types import PatchType
    objects.client.patch(ResourceClaim, name, {"metadata": {"finalizers": None}}, namespace=NS,
                         patch_type=PatchType.MERGE)
    objects.client.delete(ResourceClaim, name, namespace=NS)


def _env(edits):
    return dict(e.split("=", 1) for e in re.findall(r'"(TPU_[A-Z_]+=[^"]*)"', json.dumps(edits)))


def test_sub_host_claims_whole_host_and_health(kube_apiserver, k8s_objects, kubelet_shim, allocator, cdi_check,
                                               dra_driver, tmp_path):
    node = "e2e-tpu"
    host = build_host("tpu-v5e-8", tmp_path / "host")
    shim = kubelet_shim(node)
    daemon = dra_driver(_config(host), shim)
    shim.wait_registered(DRIVER, timeout=90)
    devs = wait_for(lambda: (lambda d: d if "tpu-host" in d and len(d) == 15 else None)(_devices(k8s_objects, node)),
                    90, "15 TPU devices", proc=daemon)
    assert devs["tpu-2x2-1"]["attributes"]["chips"] == {"string": "4,5,6,7"}

    k8s_objects.device_class("tpu", DRIVER)
    shape = f"device.attributes['{DRIVER}'].topology == '2x2'"
    chips = {}
    envs = {}
    for name in ("a", "b"):
        _claim(k8s_objects, name, shape)
        k8s_objects.pod(NS, f"p-{name}", claims=[name], node=node)
        got = allocator.allocate(NS, name, node, pod=(NS, f"p-{name}"))["devices"]["results"][0]["device"]
        chips[name] = devs[got]["attributes"]["chips"]["string"]
        prepared = shim.prepare_pod(NS, f"p-{name}")
        envs[name] = _env(cdi_check(daemon.cdi_dir, prepared[name]))
    assert set(chips.values()) == {"0,1,2,3", "4,5,6,7"}, chips  # disjoint: one per NUMA half
    for name in ("a", "b"):
        env = envs[name]
        assert env["TPU_VISIBLE_CHIPS"] == chips[name]
        assert (env["TPU_CHIPS_PER_PROCESS_BOUNDS"], env["TPU_PROCESS_BOUNDS"], env["TPU_TOPOLOGY"],
                env["TPU_ACCELERATOR_TYPE"], env["TPU_WORKER_ID"], env["TPU_WORKER_HOSTNAMES"],
                env["TPU_SKIP_MDS_QUERY"]) == ("2,2,1", "1,1,1", "2x2", "v5litepod-4", "0", "localhost", "true")
    assert envs["a"]["TPU_PROCESS_PORT"] != envs["b"]["TPU_PROCESS_PORT"]
    print("env of a 2x2 claim:", json.dumps(envs["a"], sort_keys=True))

    # No shape of 3 chips exists; the whole host is taken while a and b hold chips.
    _claim(k8s_objects, "odd", f"device.attributes['{DRIVER}'].chipCount == 3")
    with pytest.raises(AllocationFailed):
        allocator.allocate(NS, "odd", node)
    _claim(k8s_objects, "whole", f"device.attributes['{DRIVER}'].kind == 'host'")
    with pytest.raises(AllocationFailed):
        allocator.allocate(NS, "whole", node)

    # A missing device file taints its chip and every device holding it, on the health stream too.
    vfio5 = host / "dev/vfio/5"
    saved = tmp_path / "vfio5"
    shutil.move(vfio5, saved)
    holding = {"tpu-0000-00-09-0", "tpu-1x2-2", "tpu-2x2-1", "tpu-host"}

    def tainted():
        return {n: d["taints"] for n, d in _devices(k8s_objects, node).items() if d.get("taints")}

    t = wait_for(lambda: (lambda x: x if set(x) == holding else None)(tainted()), 60, "chip-5 taints", proc=daemon)
    assert t["tpu-2x2-1"][0]["key"] == f"{DRIVER}/chip-unhealthy"
    assert (t["tpu-2x2-1"][0]["value"], t["tpu-2x2-1"][0]["effect"]) == ("device-file-missing", "NoSchedule")
    pod = "p-a" if chips["a"] == "4,5,6,7" else "p-b"
    assert "Unhealthy" in json.dumps(shim.health(NS, pod))
    shutil.move(saved, vfio5)
    wait_for(lambda: not tainted(), 60, "taints removed", proc=daemon)

    for name in ("a", "b"):
        shim.unprepare_pod(NS, f"p-{name}")
        _delete_claim(k8s_objects, name)
    k8s_objects.pod(NS, "p-whole", claims=["whole"], node=node)
    got = allocator.allocate(NS, "whole", node, pod=(NS, "p-whole"))["devices"]["results"][0]["device"]
    assert got == "tpu-host"
    assert json.loads((daemon.state_dir / DRIVER / "tpu" / "leases.json").read_text()) == {}

    # A process nobody prepared holds chip 3 (a leftover workload): the prepare names it.
    (host / "proc/4242/fd").mkdir(parents=True)
    (host / "proc/4242/comm").write_text("python3\n")
    (host / "proc/4242/fd/9").symlink_to("/dev/vfio/3")
    with pytest.raises(ShimError, match=r"/dev/vfio/3 is open in pid 4242 \(python3\)"):
        shim.prepare_pod(NS, "p-whole")
    shutil.rmtree(host / "proc/4242")
    env = _env(cdi_check(daemon.cdi_dir, shim.prepare_pod(NS, "p-whole")["whole"]))
    assert (env["TPU_VISIBLE_CHIPS"], env["TPU_TOPOLOGY"]) == ("0,1,2,3,4,5,6,7", "2x4")
    shim.unprepare_pod(NS, "p-whole")


def test_topology_from_the_node_labels(kube_apiserver, k8s_objects, kubelet_shim, dra_driver, tmp_path):
    from lightkube.resources.core_v1 import Node

    node = "e2e-tpu-labels"
    host = build_host("tpu-v6e-4", tmp_path / "host", tpu_env={})  # no accelerator in the tpu-env file
    shim = kubelet_shim(node)
    k8s_objects.client.patch(Node, node, {"metadata": {"labels": {
        "cloud.google.com/gke-tpu-accelerator": "tpu-v6e-slice", "cloud.google.com/gke-tpu-topology": "2x4",
        "cloud.google.com/gke-accelerator-count": "4"}}})
    daemon = dra_driver(_config(host, readNodeLabels=True, kubeconfig=str(kube_apiserver.kubeconfig)), shim)
    devs = wait_for(lambda: (lambda d: d if "tpu-host" in d else None)(_devices(k8s_objects, node)),
                    90, "TPU devices", proc=daemon)
    a = devs["tpu-host"]["attributes"]
    # 2x4 is 8 chips: this 4-chip host is one of two hosts of the slice
    assert a["hostTopology"] == {"string": "2x4"} and a["multiHost"] == {"bool": True}
    assert "from node labels" in daemon.logs()
