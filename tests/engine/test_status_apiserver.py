"""Driver-owned claim status (data, networkData, conditions) written to a real kube-apiserver by
the engine's default status writer, and cleared again; two drivers own their entries separately."""
from __future__ import annotations

import pytest
from lightkube import ApiError

from dra_framework.engine import lightkube_status_writer
from dra_framework.model import ClaimInfo

pytestmark = pytest.mark.k8s


async def test_status_devices_written_and_cleared(kube_apiserver, k8s_objects, allocator):
    node = "status-node"
    k8s_objects.node(node)
    k8s_objects.resource_slice({"driver": "net.example.com", "pool": {"name": node, "generation": 1,
                                "resourceSliceCount": 1}, "nodeName": node,
                                "devices": [{"name": "vf-0"}, {"name": "vf-1"}]})
    k8s_objects.device_class("vf", "net.example.com")
    claim = k8s_objects.resource_claim("default", "nic", {"devices": {"requests": [
        {"name": "vf", "exactly": {"deviceClassName": "vf", "count": 2}}]}})
    allocator.allocate("default", "nic", node)
    info = ClaimInfo(claim["metadata"]["uid"], "default", "nic")
    client = kube_apiserver.client(asynchronous=True)
    write = lightkube_status_writer(client, "net.example.com")
    entry = {"driver": "net.example.com", "pool": node, "device": "vf-0", "data": {"vlan": 42},
             "networkData": {"interfaceName": "net1", "ips": ["10.9.0.7/24"], "hardwareAddress": "02:00:00:00:00:07"},
             "conditions": [{"type": "Ready", "status": "True", "reason": "Prepared", "message": "",
                             "lastTransitionTime": "2026-11-29T00:00:00Z"}]}
    await write(info, [entry])
    got = k8s_objects.get("ResourceClaim", "nic", "default")["status"]["devices"]
    assert got[0]["networkData"]["ips"] == ["10.9.0.7/24"] and got[0]["data"] == {"vlan": 42}
    assert got[0]["conditions"][0]["type"] == "Ready"
    other = lightkube_status_writer(client, "other.example.com")
    await other(info, [])                      # another field manager does not touch our entry
    assert len(k8s_objects.get("ResourceClaim", "nic", "default")["status"]["devices"]) == 1
    await write(info, [])
    assert not k8s_objects.get("ResourceClaim", "nic", "default")["status"].get("devices")
    # a re-created claim (new UID, same name) is never written by a stale writer
    stale = ClaimInfo("00000000-0000-0000-0000-000000000000", "default", "nic")
    with pytest.raises(ApiError):
        await write(stale, [entry])
    await client.close()


@pytest.mark.parametrize("parameters", [
    {"apiVersion": "net.example.com/v1", "kind": "VfConfig", "vlan": 100, "mtu": 9000},
    {"kind": "VfConfig", "apiVersion": "net.example.com/v1", "nested": {"y": 1, "x": [{"b": 2, "a": 1}]}},
], ids=["unsorted-keys", "unsorted-nested"])
async def test_status_written_when_claim_config_keys_are_unsorted(kube_apiserver, k8s_objects, allocator,
                                                                 parameters):
    # The allocation result copies the claim's opaque parameters byte for byte. A server-side apply
    # of status.devices re-encodes them with sorted keys, and the API server then refuses the write
    # as a change of the immutable status.allocation. Clients other than kubectl (Python, JS) keep
    # insertion order, so a claim created by them must still get its device status.
    node = "status-unsorted"
    k8s_objects.node(node)
    k8s_objects.resource_slice({"driver": "net.example.com", "pool": {"name": node, "generation": 1,
                                "resourceSliceCount": 1}, "nodeName": node,
                                "devices": [{"name": "vf-0"}, {"name": "vf-1"}]})
    k8s_objects.resource_slice({"driver": "other.example.com", "pool": {"name": node, "generation": 1,
                                "resourceSliceCount": 1}, "nodeName": node, "devices": [{"name": "gpu-0"}]})
    k8s_objects.device_class("vf-u", "net.example.com")
    k8s_objects.device_class("gpu-u", "other.example.com")
    claim = k8s_objects.resource_claim("default", "nic-u", {"devices": {
        "requests": [{"name": "vf", "exactly": {"deviceClassName": "vf-u"}},
                     {"name": "gpu", "exactly": {"deviceClassName": "gpu-u"}}],
        "config": [{"requests": ["vf"], "opaque": {"driver": "net.example.com", "parameters": parameters}}]}})
    allocator.allocate("default", "nic-u", node)
    before = k8s_objects.get("ResourceClaim", "nic-u", "default")["status"]["allocation"]
    info = ClaimInfo(claim["metadata"]["uid"], "default", "nic-u")
    client = kube_apiserver.client(asynchronous=True)
    net = lightkube_status_writer(client, "net.example.com")
    other = lightkube_status_writer(client, "other.example.com")
    await other(info, [{"driver": "other.example.com", "pool": node, "device": "gpu-0", "data": {"z": 1, "a": 2}}])
    await net(info, [{"driver": "net.example.com", "pool": node, "device": "vf-0", "data": {"vlan": 100},
                      "networkData": {"interfaceName": "net1", "hardwareAddress": "02:00:00:00:00:07"}}])
    got = k8s_objects.get("ResourceClaim", "nic-u", "default")["status"]
    assert sorted(d["driver"] for d in got["devices"]) == ["net.example.com", "other.example.com"]
    assert got["allocation"] == before                     # the allocation is untouched
    await net(info, [])                                     # clearing keeps the other driver's entry
    got = k8s_objects.get("ResourceClaim", "nic-u", "default")["status"]
    assert [d["driver"] for d in got["devices"]] == ["other.example.com"]
    with pytest.raises((ApiError, ValueError), match="uid"):  # a stale UID is never written
        await net(ClaimInfo("00000000-0000-0000-0000-000000000000", "default", "nic-u"),
                  [{"driver": "net.example.com", "pool": node, "device": "vf-0"}])
    await client.close()
