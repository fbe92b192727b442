"""`dra-framework run` with one installed package that misuses a hook: only the driver that uses
it fails (one line naming package and hook), the other driver registers and publishes."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from dra_framework.testing import wait_for
from test_e2e_example import config, slices_of, complete_slices_of

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "foundation"))
from test_hook_misuse import GOOD_HOOKS, backend_module, install  # noqa: E402

pytestmark = pytest.mark.k8s


def test_misused_hook_stops_only_its_driver(kube_apiserver, k8s_objects, kubelet_shim, dra_driver, tmp_path):
    site = tmp_path / "site"
    install(site, "typo", backend_module("typo", GOOD_HOOKS.replace("def dra_prepare(", "def dra_prepair(")))
    node = "e2e-misuse"
    shim = kubelet_shim(node)
    cfg = config([{"name": "example", "options": {"count": 1}}], driver="good.dra.dev")
    cfg["drivers"].append({"name": "typo.dra.dev", "backends": [{"name": "typo"}]})
    daemon = dra_driver(cfg, shim, env={"PYTHONPATH": str(site)})
    shim.wait_registered("good.dra.dev", timeout=60)
    assert wait_for(lambda: complete_slices_of(k8s_objects, "good.dra.dev", node), 60, "slices of the good driver", proc=daemon)
    line = wait_for(lambda: next((ln for ln in daemon.logs().splitlines() if "driver typo.dra.dev did not start" in ln),
                                 None), 30, "the failed driver's log line", proc=daemon)
    assert "package typo-backend 1.0" in line and "dra_prepair is not a dra_framework hook; did you mean dra_prepare?" in line
    assert daemon.alive()
    assert not slices_of(k8s_objects, "typo.dra.dev", node)
