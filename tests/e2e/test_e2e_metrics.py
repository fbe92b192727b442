"""Every metric ``dra-framework run`` exports moves when its event happens, scraped from the
``/metrics`` port of a real daemon (real API server, the kubelet's own DRA code, a backend
installed through its entry point whose health, slowness and failures the test switches by
files). A metric added later without a case here fails the test."""
from __future__ import annotations

import json
import re
import threading

import pytest

from dra_framework.testing import wait_for
from dra_framework.testing.k8s import free_port
from test_e2e_example import config, complete_slices_of

pytestmark = pytest.mark.k8s

DRIVER = "metrics.dra.dev"

BACKEND = '''
import asyncio, pathlib
from dra_framework.api import (ContainerEdits, Device, Health, HealthReport, PreparedDeviceEdits,
                               PrepareResult, hookimpl)

class Probe:
    """m-0, m-1 and m-bad (an attribute longer than the API allows: left out of the slices).
    Files in the state dir switch behaviour: ``slow`` (prepare takes 3 s), ``fail`` (prepare
    raises), ``unhealthy`` (m-0 reported Unhealthy)."""

    def __init__(self, options, context):
        self.ctx = context

    def flag(self, name):
        return (pathlib.Path(self.ctx.state_dir) / name).exists()

    @hookimpl
    def dra_discover(self, inventory):
        for i in range(2):
            inventory.add_device(Device(f"m-{i}", attributes={"idx": i}))
        inventory.add_device(Device("m-bad", attributes={"note": "x" * 100}))

    @hookimpl
    async def dra_watch_health(self, report):
        last = None
        while True:
            now = Health.UNHEALTHY if self.flag("unhealthy") else Health.HEALTHY
            if now != last:
                report(HealthReport("m-0", now))
                report(HealthReport("m-1", Health.HEALTHY))
                last = now
            await asyncio.sleep(0.2)

    @hookimpl
    async def dra_prepare(self, ctx, devices):
        if self.flag("slow"):
            await asyncio.sleep(3)
        if self.flag("fail"):
            raise RuntimeError("switched to fail")
        result = PrepareResult()
        for d in devices:
            result.devices[d.name] = PreparedDeviceEdits(ContainerEdits(env={"PROBE": d.name}))
        return result

    @hookimpl
    def dra_unprepare(self, stored):
        return None

@hookimpl
def dra_register_backends(register):
    register("metricsprobe", Probe)
'''


def scrape(daemon) -> dict[str, float]:
    """``{'name{labels}': value}`` of one scrape (comments and ``_created`` series left out)."""
    out = {}
    for line in daemon.metrics().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        key, value = line.rsplit(" ", 1)
        if not key.split("{")[0].endswith("_created"):
            out[key] = float(value)
    return out


def family_names(daemon) -> set[str]:
    text = daemon.metrics()
    return {n for n in re.findall(r"^# TYPE (dra_framework_\w+) ", text, re.M) if not n.endswith("_created")}


def test_every_exported_metric_moves(kube_apiserver, k8s_objects, kubelet_shim, allocator, dra_driver, tmp_path):
    plugin = tmp_path / "plugin"
    plugin.mkdir()
    (plugin / "metricsprobe_backend.py").write_text(BACKEND)
    dist = plugin / "metricsprobe_backend-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: metricsprobe-backend\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[dra_framework.backends]\nmetricsprobe = metricsprobe_backend\n")

    node = "e2e-metrics"
    shim = kubelet_shim(node)
    daemon = dra_driver(config([{"name": "metricsprobe"}], driver=DRIVER), shim, env={"PYTHONPATH": str(plugin)})
    shim.wait_registered(DRIVER, timeout=60)
    state = daemon.state_dir / DRIVER / "metricsprobe"
    state.mkdir(parents=True, exist_ok=True)
    d = f'driver="{DRIVER}"'
    checked: set[str] = set()
    current = [daemon]

    def moved(family: str, series: str, pred, what: str) -> float:
        proc = current[0]
        value = wait_for(lambda: (lambda v: (v,) if v is not None and pred(v) else None)(scrape(proc).get(series)),
                         30, f"{series} ({what})", proc=proc)
        checked.add(family)
        return value[0]

    # Publishing: slices written, the invalid device counted, the health source's first reports.
    wait_for(lambda: complete_slices_of(k8s_objects, DRIVER, node), 60, "slices", proc=daemon)
    moved("dra_framework_resourceslice_writes_total", f'dra_framework_resourceslice_writes_total{{{d},verb="create"}}',
          lambda v: v >= 1, "a slice was created")
    moved("dra_framework_invalid_devices", f'dra_framework_invalid_devices{{{d},pool="{node}"}}',
          lambda v: v == 1, "m-bad left out")
    moved("dra_framework_unhealthy_devices", f"dra_framework_unhealthy_devices{{{d}}}", lambda v: v == 0, "all healthy")
    moved("dra_framework_api_server_reachable", "dra_framework_api_server_reachable", lambda v: v == 1, "API up")

    # A slow prepare: in flight while it runs, then one prepared claim and a latency sample.
    k8s_objects.device_class("metrics-dev", DRIVER)
    for name in ("c1", "c2"):
        k8s_objects.resource_claim("default", name, {"devices": {"requests": [{"name": "a", "exactly": {
            "deviceClassName": "metrics-dev"}}]}})
        k8s_objects.pod("default", f"p-{name}", claims=[name], node=node)
        allocator.allocate("default", name, node, pod=("default", f"p-{name}"))
    (state / "slow").touch()
    done = threading.Thread(target=shim.prepare_pod, args=("default", "p-c1"))
    done.start()
    moved("dra_framework_inflight_operations", f'dra_framework_inflight_operations{{{d},operation="prepare"}}',
          lambda v: v == 1, "a prepare in flight")
    done.join(30)
    (state / "slow").unlink()
    moved("dra_framework_prepared_claims", f"dra_framework_prepared_claims{{{d}}}", lambda v: v == 1, "c1 prepared")
    moved("dra_framework_operation_duration_seconds",
          f'dra_framework_operation_duration_seconds_count{{{d},operation="prepare"}}', lambda v: v >= 1, "latency")
    scrape_now = scrape(daemon)
    assert scrape_now[f'dra_framework_inflight_operations{{{d},operation="prepare"}}'] == 0

    # A failing prepare, counted by reason.
    (state / "fail").touch()
    with pytest.raises(Exception, match="switched to fail"):
        shim.prepare_pod("default", "p-c2")
    (state / "fail").unlink()
    moved("dra_framework_operation_errors_total",
          f'dra_framework_operation_errors_total{{{d},operation="prepare",reason="backend"}}', lambda v: v >= 1,
          "a backend failure")

    # A device turns unhealthy.
    (state / "unhealthy").touch()
    moved("dra_framework_unhealthy_devices", f"dra_framework_unhealthy_devices{{{d}}}", lambda v: v == 1, "m-0 unhealthy")
    shim.unprepare_pod("default", "p-c1")
    moved("dra_framework_prepared_claims", f"dra_framework_prepared_claims{{{d}}}", lambda v: v == 0, "c1 unprepared")
    families = family_names(daemon)

    # Restart with a damaged checkpoint and the API server unreachable.
    assert daemon.stop() == 0, daemon.logs()
    (tmp_path / "dead.kubeconfig").write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "x",
        "clusters": [{"name": "x", "cluster": {"server": f"https://127.0.0.1:{free_port()}"}}],
        "contexts": [{"name": "x", "context": {"cluster": "x", "user": "x"}}],
        "users": [{"name": "x", "user": {"token": "x"}}]}))
    cp = daemon.checkpoint_path()
    cp.write_bytes(cp.read_bytes()[:20])
    current[0] = daemon.clone("restarted", kubeconfig=str(tmp_path / "dead.kubeconfig")).start()
    moved("dra_framework_checkpoint_problems_total", f"dra_framework_checkpoint_problems_total{{{d}}}",
          lambda v: v == 1, "the checkpoint moved aside")
    moved("dra_framework_api_server_reachable", "dra_framework_api_server_reachable", lambda v: v == 0, "API down")
    moved("dra_framework_api_unreachable_total", "dra_framework_api_unreachable_total", lambda v: v >= 1,
          "failed requests")
    families |= family_names(current[0])
    assert families - checked == set(), f"metrics without a test of their event: {sorted(families - checked)}"
