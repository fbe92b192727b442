"""Operator-facing behaviour of ``dra-framework run``: Prometheus metrics, liveness/readiness,
and a damaged checkpoint that is moved aside and reported without a crash loop."""
from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from dra_framework.testing import wait_for
from dra_framework.testing.k8s import free_port  # noqa: F401 - shared with other e2e modules
from test_e2e_example import config

pytestmark = pytest.mark.k8s

DRIVER = "ops.dra.dev"


def http(url: str) -> tuple[int, str]:
    """GET ``url``: (status, body), also for error statuses (other e2e modules import it)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_metrics_probes_and_damaged_checkpoint(kube_apiserver, k8s_objects, kubelet_shim, allocator, dra_driver):
    node = "e2e-ops"
    shim = kubelet_shim(node)
    cfg = config([{"name": "example", "options": {"count": 2}}], driver=DRIVER)
    daemon = dra_driver(cfg, shim)  # with free metrics and probe ports
    shim.wait_registered(DRIVER, timeout=60)
    assert wait_for(lambda: daemon.probe("/healthz")[0] == 200, 30, "/healthz", proc=daemon)
    assert wait_for(lambda: daemon.probe("/readyz") == (200, "ok\n"), 30, "/readyz", proc=daemon)
    k8s_objects.wait_slices(DRIVER, node, proc=daemon)

    k8s_objects.device_class("ops-acc", DRIVER)
    k8s_objects.resource_claim("default", "ops", {"devices": {"requests": [{"name": "a", "exactly": {
        "deviceClassName": "ops-acc"}}]}})
    k8s_objects.pod("default", "p-ops", claims=["ops"], node=node)
    allocator.allocate("default", "ops", node, pod=("default", "p-ops"))
    shim.prepare_pod("default", "p-ops")
    metrics = daemon.metrics()
    assert f'dra_framework_prepared_claims{{driver="{DRIVER}"}} 1.0' in metrics
    assert f'dra_framework_operation_duration_seconds_count{{driver="{DRIVER}",operation="prepare"}}' in metrics
    shim.unprepare_pod("default", "p-ops")

    # A truncated checkpoint: moved aside, reported by /readyz and a Node Event; the driver serves on.
    assert daemon.stop() == 0
    shim.wait_deregistered(DRIVER)
    cp = daemon.checkpoint_path()
    cp.write_bytes(cp.read_bytes()[:20])
    daemon.start()
    shim.wait_registered(DRIVER, timeout=60)
    # /readyz answers "starting" first (the sockets and probes are up before the driver starts)
    code, body = wait_for(lambda: (lambda r: r if r[0] == 503 and "checkpoint" in r[1] else None)(
        daemon.probe("/readyz")), 30, "/readyz to report the checkpoint", proc=daemon)
    assert list(cp.parent.glob("checkpoint.json.corrupt-*"))
    from lightkube.resources.core_v1 import Event

    events = [e for e in k8s_objects.client.list(Event, namespace="default")
              if e.involvedObject.kind == "Node" and e.involvedObject.name == node]
    assert any("checkpoint" in (e.message or "") for e in events), [e.message for e in events]
    assert daemon.alive()
    # Still serving: a new claim prepares.
    k8s_objects.resource_claim("default", "ops2", {"devices": {"requests": [{"name": "a", "exactly": {
        "deviceClassName": "ops-acc"}}]}})
    k8s_objects.pod("default", "p-ops2", claims=["ops2"], node=node)
    allocator.allocate("default", "ops2", node, pod=("default", "p-ops2"))
    assert shim.prepare_pod("default", "p-ops2")["ops2"]
