"""``dra-framework run`` imports only the backend plugins its config names (docs/backends.md,
"Which plugins load"): the built-in backends' code stays out of a driver that does not use them."""
from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.k8s


def test_run_imports_only_the_backends_of_its_config(dra_driver, kubelet_shim):
    shim = kubelet_shim("plugin-loading")
    # PYTHONPROFILEIMPORTTIME: the interpreter logs every module it imports to stderr (the log)
    daemon = dra_driver({"drivers": [{"name": "example.dra.dev", "backends": [
        {"name": "example", "options": {"count": 1}}]}]}, shim, env={"PYTHONPROFILEIMPORTTIME": "1"})
    shim.wait_registered("example.dra.dev", timeout=60)
    log = daemon.log_path.read_text()
    imported = set(re.findall(r"^import time:.*\|\s+([\w.]+)$", log, flags=re.M))
    assert "dra_framework.runtime" in imported, sorted(imported)[:50]  # the log lists the imports
    assert not [m for m in imported if m.startswith("dra_backends")], sorted(imported)
