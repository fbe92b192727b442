"""The real daemon under umask 000, with symlinks planted where its lock files go: sockets are
0600, its directories 0750/0700, lock and checkpoint files 0600, and nothing is created through a
planted link."""
from __future__ import annotations

import os
import stat

import pytest

from daemon_proc import Daemon

pytestmark = pytest.mark.k8s

DRIVER = "modes.dra.dev"


def mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_modes_under_umask_000_and_planted_symlinks(kube_apiserver, k8s_objects, kubelet_shim, allocator,
                                                    cdi_check, tmp_path):
    node = "modes"
    shim = kubelet_shim(node)
    plugin_dir = shim.plugins_dir / DRIVER
    outside = tmp_path / "outside"
    outside.mkdir()
    plugin_dir.mkdir()
    for name in ["checkpoint.lock"] + [f"serialize-{i:02d}.lock" for i in range(64)]:
        (plugin_dir / name).symlink_to(outside / f"victim-{name}")
    daemon = Daemon({"nodeName": node, "kubeletRootDir": str(shim.root), "cdiRoot": str(tmp_path / "cdi"),
                     "stateDir": str(tmp_path / "state"), "kubeconfig": str(kube_apiserver.kubeconfig),
                     "drivers": [{"name": DRIVER, "backends": [{"name": "example", "options": {"count": 1}}]}]},
                    tmp_path)
    old = os.umask(0)
    try:
        daemon.start()  # inherits umask 000
    finally:
        os.umask(old)
    try:
        entry = shim.wait_registered(DRIVER, timeout=60)
        k8s_objects.device_class("modes", DRIVER)
        k8s_objects.resource_claim("default", "modes", {"devices": {"requests": [{
            "name": "acc", "exactly": {"deviceClassName": "modes"}}]}})
        k8s_objects.pod("default", "p-modes", claims=["modes"], node=node)
        from daemon_proc import wait_for
        wait_for(lambda: allocator.allocate("default", "modes", node, pod=("default", "p-modes")), 60,
                 "allocation", daemon)
        ids = shim.prepare_pod("default", "p-modes")["modes"]
        cdi_check(tmp_path / "cdi", ids)

        regs = [shim.registry_dir / n for n in os.listdir(shim.registry_dir)]
        assert [mode(p) for p in regs] == [0o600] and mode(entry["endpoint"]) == 0o600
        assert mode(plugin_dir) == 0o750
        assert mode(plugin_dir / "checkpoint.json") == 0o600
        locks = [p for p in plugin_dir.iterdir() if p.name.endswith(".lock")]
        regular = [p for p in locks if stat.S_ISREG(os.lstat(p).st_mode)]
        assert {p.name for p in regular} >= {"checkpoint.lock"} and len(regular) >= 2
        assert all(mode(p) == 0o600 for p in regular)
        assert list(outside.iterdir()) == []  # nothing created through a planted link
        assert mode(tmp_path / "state") == mode(tmp_path / "state" / DRIVER) == 0o700
        assert mode(tmp_path / "state" / DRIVER / "example") == 0o700
        assert mode(tmp_path / "cdi") == 0o755
        assert all(mode(p) == 0o644 for p in (tmp_path / "cdi").iterdir())
        assert "is a symlink" in daemon.logs()
        shim.unprepare_pod("default", "p-modes")
    finally:
        assert daemon.stop() == 0, daemon.logs()
