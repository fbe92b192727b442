"""Discovery is valid and stable; the ResourceSlices are accepted by the real API server."""
from __future__ import annotations

import subprocess

import pytest
import yaml

from ..driver import executable
from ..k8s import wait_for
from . import support
from .conftest import NODE

pytestmark = pytest.mark.k8s


def test_discovery_is_valid(conformance_target, tmp_path):
    """``dra-framework validate``: the config, the backend's options and every discovered device
    (names, attributes, capacities, counters) pass the framework's ResourceSlice rules."""
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(conformance_target.driver_config(
        tmp_path, nodeName=NODE, stateDir=str(tmp_path / "state"), cdiRoot=str(tmp_path / "cdi"))))
    r = subprocess.run([executable(), "validate", "--config", str(cfg)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"dra-framework validate failed:\n{r.stdout}\n{r.stderr}"


def test_device_names_are_stable_on_rediscovery(conformance_discovery):
    """A second ``dra_discover`` of the same backend objects (a rediscovery) names the same devices."""
    d = conformance_discovery
    assert d.first, "the backend discovered no devices with this config"
    assert not d.errors, f"devices that would not be published: {d.errors}"
    assert d.second == d.first, (f"rediscovery changed the devices: gone {sorted(set(d.first) - set(d.second))}, "
                                 f"new {sorted(set(d.second) - set(d.first))}")


def test_slices_accepted_and_names_stable_across_runs(conformance_target, conformance_discovery, conformance_harness,
                                                      k8s_version):
    """The daemon publishes every discovered device through the real kube-apiserver (its
    validation and field rules of this Kubernetes version), and a second run publishes the same."""
    h, t = conformance_harness, conformance_target
    shim = h.shim(f"{NODE}-pristine")
    drv = h.driver(t.driver_config(h.host_dir("pristine"), janitorIntervalSeconds=3600), shim, "pristine")
    want = sorted(k.split("/", 1)[1] for k in conformance_discovery.first)
    runs = []
    for run in (1, 2):
        drv.start().wait_running(120)
        pub = wait_for(lambda: (lambda p: p if p.names == want else None)(support.published(h.cp, t.driver, shim.node_name)),
                       120, f"run {run}: kube-apiserver {k8s_version} to hold every discovered device of {t.driver}",
                       proc=drv)
        runs.append(pub.names)
        assert drv.stop() == 0, drv.tail()
    assert runs[0] == runs[1]
