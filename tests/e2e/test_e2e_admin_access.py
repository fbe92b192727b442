"""Admin access on a partition a workload holds, end to end: the scheduler's allocator gives an
admin-access claim the workload's partition; the kubelet prepares both pods; unpreparing the
admin pod leaves the workload's partition alone."""
from __future__ import annotations

import pytest

from dra_framework.testing import wait_for
from test_e2e_example import config, complete_slices_of

pytestmark = pytest.mark.k8s

DRIVER = "adm.dra.dev"


def test_admin_access_never_takes_over_a_partition(kube_apiserver, k8s_objects, kubelet_shim, allocator,
                                                   cdi_check, dra_driver):
    node = "e2e-admin"
    shim = kubelet_shim(node)
    daemon = dra_driver(config([{"name": "example", "options": {"count": 1}}], driver=DRIVER), shim)
    shim.wait_registered(DRIVER, timeout=60)
    wait_for(lambda: complete_slices_of(k8s_objects, DRIVER, node), 60, "ResourceSlices", proc=daemon)

    k8s_objects.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": "e2e-admin-mon", "labels": {"resource.kubernetes.io/admin-access": "true"}}})
    k8s_objects.device_class("e2e-adm", DRIVER)
    half0 = f"device.attributes['{DRIVER}'].partition == true && device.attributes['{DRIVER}'].index == 0"
    for ns, name, admin in (("default", "work", False), ("e2e-admin-mon", "mon", True)):
        req = {"deviceClassName": "e2e-adm", "selectors": [{"cel": {"expression": half0}}]}
        if admin:
            req["adminAccess"] = True
        k8s_objects.resource_claim(ns, name, {"devices": {"requests": [{"name": "r", "exactly": req}]}})
        k8s_objects.pod(ns, f"p-{name}", claims=[name], node=node)
    work = allocator.allocate("default", "work", node, pod=("default", "p-work"))["devices"]["results"][0]
    mon = allocator.allocate("e2e-admin-mon", "mon", node, pod=("e2e-admin-mon", "p-mon"))["devices"]["results"][0]
    assert mon["device"] == work["device"] and mon.get("adminAccess") is True

    work_ids = shim.prepare_pod("default", "p-work")["work"]
    work_uid = k8s_objects.get("ResourceClaim", "work", "default")["metadata"]["uid"]
    marker = daemon.state_dir / DRIVER / "example" / "partitions" / work["device"]
    assert marker.read_text() == work_uid
    mon_ids = shim.prepare_pod("e2e-admin-mon", "p-mon")["mon"]
    assert f"EXAMPLE_DEVICE={work['device']}" in str(cdi_check(daemon.cdi_dir, mon_ids))
    assert marker.read_text() == work_uid               # not re-created for the admin claim

    shim.unprepare_pod("e2e-admin-mon", "p-mon")
    assert marker.read_text() == work_uid               # still there for the running workload
    assert cdi_check(daemon.cdi_dir, work_ids)
    shim.unprepare_pod("default", "p-work")
    assert not marker.exists()
    assert daemon.stop() == 0, daemon.logs()
    # the daemon (run with -v) logs each operation once at info, and each hook call at debug
    logs = daemon.logs()
    assert logs.count(f"engine: prepared claim default/work ({work_uid}) in ") == 1
    assert logs.count(f"engine: unprepared claim default/work ({work_uid}) in ") == 1
    assert f"backend {DRIVER}/example: dra_prepare took " in logs
