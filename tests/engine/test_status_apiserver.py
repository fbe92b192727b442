"""Driver-owned claim status (data, networkData, conditions) written to a real kube-apiserver by
the engine's default status writer, and cleared again; two drivers own their entries separately."""
from __future__ import annotations

import pytest

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
    with pytest.raises(Exception):
        await write(stale, [entry])
    await client.close()
