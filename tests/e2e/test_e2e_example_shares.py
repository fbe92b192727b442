"""Consumable capacity through the generic framework with the third-party example backend
(``shared: true``): two claims of 8Gi share one 16Gi card, each prepared with its own share ID,
its own CDI device and its own status entry; the checkpoint keeps each share's consumed capacity;
unpreparing one share leaves the other."""
from __future__ import annotations

import json

import pytest

from dra_framework.api import quantity_value
from dra_framework.testing import wait_for
from test_e2e_example import config, slices_of

pytestmark = pytest.mark.k8s

DRIVER = "example.dra.dev"


def test_example_backend_shares_one_card(kube_apiserver, k8s_objects, kubelet_shim, allocator, cdi_check, dra_driver):
    if "DRAConsumableCapacity=true" not in kube_apiserver.feature_gates:
        pytest.skip(f"Kubernetes {kube_apiserver.version} has no DRAConsumableCapacity gate")
    minor = int(str(kube_apiserver.version).lstrip("v").split(".")[1])
    node = "e2e-example-shares"
    shim = kubelet_shim(node)
    daemon = dra_driver(config([{"name": "example", "options": {"count": 2, "shared": True}}]), shim)
    shim.wait_registered(DRIVER, timeout=90)
    wait_for(lambda: sum(len(s["spec"].get("devices", [])) for s in slices_of(k8s_objects, DRIVER, node)) >= 2,
             90, "two shared cards", proc=daemon)
    k8s_objects.device_class("example", DRIVER)
    for name in ("a", "b"):
        k8s_objects.resource_claim("default", name, {"devices": {"requests": [{"name": "acc", "exactly": {
            "deviceClassName": "example", "capacity": {"requests": {"memory": "8Gi"}},
            "selectors": [{"cel": {"expression": f"device.attributes['{DRIVER}'].index == 0"}}]}}]}})
        k8s_objects.pod("default", name, claims=[name], node=node)
    results = {n: allocator.allocate("default", n, node, pod=("default", n))["devices"]["results"][0] for n in "ab"}
    assert {r["device"] for r in results.values()} == {"acc-0"}
    shares = {n: r["shareID"] for n, r in results.items()}
    assert shares["a"] != shares["b"]

    prepared = {n: shim.prepare_pod("default", n) for n in "ab"}
    for n, p in prepared.items():
        (cdi_id,) = p[n]
        assert shares[n] in cdi_id, cdi_id  # one CDI device per share: <claim uid>-acc-0.<share id>
        env = json.dumps(cdi_check(daemon.cdi_dir, [cdi_id]))
        assert "EXAMPLE_DEVICE=acc-0" in env
        if minor >= 35:
            assert p.claims[n]["devices"][0]["shareID"] == shares[n]
    cp = daemon.checkpoint()
    assert sorted((d["shareId"], quantity_value(d["consumedCapacity"]["memory"])) for e in cp.values()
                  for d in e["devices"]) == sorted((s, 8 << 30) for s in shares.values())
    shim.unprepare_pod("default", "a")
    assert [e["name"] for e in daemon.checkpoint().values()] == ["b"]
    shim.unprepare_pod("default", "b")
    assert not daemon.checkpoint()
