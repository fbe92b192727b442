"""Scenarios from public DRA driver bug reports (docs/failure-modes.md, with links) against the
kubelet's own DRA code and a real kube-apiserver, through the real ``dra-framework run``
executable."""
from __future__ import annotations

import os
import signal
import time

import pytest

from dra_framework.testing import wait_for
from test_e2e_example import config, complete_slices_of

pytestmark = pytest.mark.k8s

DRIVER = "buglog.dra.dev"


def test_sigkill_then_new_instance_and_claim_allocated_while_down(kube_apiserver, k8s_objects, kubelet_shim,
                                                                  allocator, dra_driver):
    """docs/failure-modes.md#stale-sockets-after-a-kill-or-a-rolling-update:
    a SIGKILLed instance leaves its sockets behind; the next instance (a fresh per-pod
    socket name, as a rolling update uses) removes them, so the kubelet ends up with exactly one
    registration for the driver, on the new endpoint.
    docs/failure-modes.md#slices-while-the-driver-is-down: a claim allocated from the stale
    slice while the driver was down is prepared once it is back.
    docs/failure-modes.md#health-service-advertised-but-not-implemented: GetInfo is answered
    before the backends are loaded, so the health service is always offered; without a health
    source a stream gets one clean UNIMPLEMENTED (the daemon logs it once).
    docs/failure-modes.md#idle-connection-closed-by-the-kubelet: an idle period between calls
    is harmless."""
    node = "e2e-buglog"
    shim = kubelet_shim(node)
    cfg = config([{"name": "example", "options": {"count": 1}}], driver=DRIVER)
    cfg["podUID"] = "pod-old"
    old = dra_driver(cfg, shim, name="old")
    entry = shim.wait_registered(DRIVER, timeout=60)
    assert entry["endpoint"].endswith("dra-pod-old.sock")
    assert [v for v in entry["versions"] if "Health" in v], entry  # docs/failure-modes.md#health-service-advertised-but-not-implemented
    wait_for(lambda: complete_slices_of(k8s_objects, DRIVER, node), 60, "ResourceSlices", proc=old)

    assert old.stop(signal.SIGKILL) == -signal.SIGKILL
    registry = shim.root / "plugins_registry"
    plugin_dir = shim.root / "plugins" / DRIVER
    assert [n for n in os.listdir(registry) if n.startswith(DRIVER)]  # left behind

    # While the driver is down its slice still looks valid: a claim gets allocated (docs/failure-modes.md#slices-while-the-driver-is-down).
    k8s_objects.device_class("buglog-acc", DRIVER)
    k8s_objects.resource_claim("default", "bl", {"devices": {"requests": [{"name": "a", "exactly": {
        "deviceClassName": "buglog-acc", "selectors": [{"cel": {"expression":
            f"device.attributes['{DRIVER}'].partition == false"}}]}}]}})
    k8s_objects.pod("default", "p-bl", claims=["bl"], node=node)
    allocator.allocate("default", "bl", node, pod=("default", "p-bl"))

    new = old.clone("new", podUID="pod-new").start()
    wait_for(lambda: (shim.registered()["drivers"].get(DRIVER) or {}).get("endpoint", "").endswith("dra-pod-new.sock"),
             60, "registration of the new instance", proc=new)
    regs = sorted(n for n in os.listdir(registry) if n.startswith(DRIVER))
    assert regs == [f"{DRIVER}-pod-new-reg.sock"], regs
    socks = sorted(n for n in os.listdir(plugin_dir) if n.endswith(".sock"))
    assert socks == ["dra-pod-new.sock"], socks

    prepared = shim.prepare_pod("default", "p-bl")
    ids = prepared["bl"]
    assert len(ids) == 1 and ids[0].startswith(f"k8s.{DRIVER}/claim=")
    time.sleep(3)  # idle, then call again (docs/failure-modes.md#idle-connection-closed-by-the-kubelet)
    assert shim.prepare_pod("default", "p-bl")["bl"] == ids
    shim.unprepare_pod("default", "p-bl")
    uid = prepared.claims["bl"]["uid"]
    assert not [f for f in os.listdir(new.cdi_dir) if uid in f]
    assert new.stop() == 0, new.logs()
    # A clean stop removes both sockets (docs/failure-modes.md#stale-sockets-after-a-kill-or-a-rolling-update);
    # the kubelet deregisters the driver.
    assert not [n for n in os.listdir(registry) if n.startswith(DRIVER)]
    assert not [n for n in os.listdir(plugin_dir) if n.endswith(".sock")]
    shim.wait_deregistered(DRIVER)
