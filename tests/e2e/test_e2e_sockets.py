"""Socket paths that do not fit the Go helper's names: a 63-byte driver name, a pod UID and the
longest kubelet root the kubelet itself runs with still register and prepare through the
kubelet's own plugin watcher and DRA manager."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from dra_framework.kubelet.sockets import KUBELET_ROOT_MAX, UNIX_PATH_MAX
from dra_framework.testing import k8s

from dra_framework.testing import wait_for

pytestmark = pytest.mark.k8s

UID = "11111111-2222-3333-4444-555555555555"
DRIVER63 = "a" * 20 + "." + "b" * 20 + "." + "c" * 21


@pytest.fixture
def long_root_shim(harness_bins, kube_apiserver, k8s_objects, tmp_path):
    """A kubelet shim whose root dir is exactly KUBELET_ROOT_MAX bytes long."""
    base = tempfile.mkdtemp(prefix="dra-kl-")
    root = Path(base) / ("r" * (KUBELET_ROOT_MAX - len(base) - 1))
    assert len(str(root)) == KUBELET_ROOT_MAX
    shims = []

    def make(node: str) -> k8s.KubeletShim:
        k8s_objects.node(node)
        shim = k8s.KubeletShim(harness_bins, kube_apiserver.kubeconfig, node, root, tmp_path / "logs",
                               feature_gates=kube_apiserver.feature_gates)
        shims.append(shim)
        return shim.start()

    yield make
    for s in shims:
        s.stop()
    import shutil
    shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("driver", ["abcdef.dra-example-driver.sigs.k8s.io", DRIVER63])
def test_long_names_register_and_prepare(driver, long_root_shim, kube_apiserver, k8s_objects, allocator,
                                         cdi_check, dra_driver):
    node = f"sock-{len(driver)}"
    shim = long_root_shim(node)
    daemon = dra_driver({"podUID": UID, "drivers": [{"name": driver, "backends": [
        {"name": "example", "options": {"count": 1}}]}]}, shim)
    entry = shim.wait_registered(driver, timeout=60)
    endpoint = entry["endpoint"]
    assert len(endpoint.encode()) <= UNIX_PATH_MAX and os.path.exists(endpoint)
    regs = [n for n in os.listdir(shim.registry_dir) if not n.startswith(".")]
    assert len(regs) == 1 and len(os.path.join(shim.registry_dir, regs[0]).encode()) <= UNIX_PATH_MAX

    k8s_objects.device_class(f"c{len(driver)}", driver)
    k8s_objects.resource_claim("default", f"c{len(driver)}", {"devices": {"requests": [{
        "name": "acc", "exactly": {"deviceClassName": f"c{len(driver)}"}}]}})
    k8s_objects.pod("default", f"p{len(driver)}", claims=[f"c{len(driver)}"], node=node)
    wait_for(lambda: allocator.allocate("default", f"c{len(driver)}", node, pod=("default", f"p{len(driver)}")),
             60, "allocation", proc=daemon)
    prepared = shim.prepare_pod("default", f"p{len(driver)}")
    ids = prepared[f"c{len(driver)}"]
    assert len(ids) == 1
    cdi_check(daemon.cdi_dir, ids)
    shim.unprepare_pod("default", f"p{len(driver)}")
    assert daemon.stop() == 0, daemon.logs()
    # Both sockets are gone after a clean stop.
    assert not [n for n in os.listdir(shim.registry_dir) if not n.startswith(".")]
    assert not os.path.exists(endpoint)
