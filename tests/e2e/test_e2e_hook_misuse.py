"""`dra-framework run` with one installed package that misuses a hook: only the driver that uses
it fails (one line naming package and hook), the other driver registers and publishes."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from daemon_proc import wait_for
from test_e2e_example import config, slices_of

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "foundation"))
from test_hook_misuse import GOOD_HOOKS, backend_module, install  # noqa: E402

pytestmark = pytest.mark.k8s


def test_misused_hook_stops_only_its_driver(kube_apiserver, k8s_objects, kubelet_shim, daemons, tmp_path,
                                            monkeypatch):
    site = tmp_path / "site"
    install(site, "typo", backend_module("typo", GOOD_HOOKS.replace("def dra_prepare(", "def dra_prepair(")))
    monkeypatch.setenv("PYTHONPATH", str(site))
    node = "e2e-misuse"
    shim = kubelet_shim(node)
    cfg = config(shim, kube_apiserver, tmp_path, node, [{"name": "example", "options": {"count": 1}}],
                 driver="good.dra.dev")
    cfg["drivers"].append({"name": "typo.dra.dev", "backends": [{"name": "typo"}]})
    daemon = daemons(cfg)
    shim.wait_registered("good.dra.dev", timeout=60)
    assert wait_for(lambda: slices_of(k8s_objects, "good.dra.dev", node), 60, "slices of the good driver", daemon)
    line = wait_for(lambda: next((ln for ln in daemon.logs().splitlines() if "driver typo.dra.dev did not start" in ln),
                                 None), 30, "the failed driver's log line", daemon)
    assert "package typo-backend 1.0" in line and "dra_prepair is not a dra_framework hook; did you mean dra_prepare?" in line
    assert daemon.alive()
    assert not slices_of(k8s_objects, "typo.dra.dev", node)
