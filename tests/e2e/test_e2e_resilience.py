"""The daemon heals itself instead of crash-looping: a driver whose hardware is not there yet is
retried, a second instance cannot steal a live driver's sockets, and sockets that vanish are
served again so the kubelet re-registers the driver."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from daemon_proc import Daemon, wait_for
from test_e2e_example import config, slices_of

pytestmark = pytest.mark.k8s

ROOT = Path(__file__).resolve().parents[2]


def test_driver_whose_hardware_appears_later_starts_on_retry(kube_apiserver, k8s_objects, kubelet_shim,
                                                             daemons, tmp_path):
    node = "e2e-late"
    shim = kubelet_shim(node)
    host = tmp_path / "host"            # the sample host is not there yet
    cfg = config(shim, kube_apiserver, tmp_path, node, [{"name": "nvidia", "options": {
        "nvml": "fake", "hostRoot": str(host), "driverRoot": str(host), "hostDriverRoot": "/",
        "executor": "record"}}], driver="late.nvidia.com")
    daemon = daemons(cfg)
    wait_for(lambda: "retrying start-up" in daemon.logs(), 60, "a failed start and a retry", daemon)
    assert daemon.alive()
    shutil.copytree(ROOT / "examples" / "hosts" / "dgx-h100", host, symlinks=True)
    shim.wait_registered("late.nvidia.com", timeout=90)
    assert wait_for(lambda: slices_of(k8s_objects, "late.nvidia.com", node), 60, "slices", daemon)


def test_second_instance_cannot_take_over_and_lost_sockets_come_back(kube_apiserver, kubelet_shim,
                                                                    daemons, tmp_path):
    node = "e2e-sockets"
    shim = kubelet_shim(node)
    cfg = config(shim, kube_apiserver, tmp_path, node, [{"name": "example", "options": {"count": 1}}],
                 driver="sock.dra.dev")
    first = daemons(cfg)
    shim.wait_registered("sock.dra.dev", timeout=60)
    reg = shim.root / "plugins_registry" / "sock.dra.dev-reg.sock"
    inode = reg.stat().st_ino

    second = Daemon(cfg, tmp_path, "second").start()
    wait_for(lambda: "another process is serving DRA driver sock.dra.dev" in second.logs(), 60,
             "the second instance to refuse the live sockets", second)
    assert second.stop() == 0
    assert reg.exists() and reg.stat().st_ino == inode, "the first instance's socket was replaced"

    reg.unlink()                       # someone cleans the registry directory
    wait_for(lambda: reg.exists(), 40, "the registration socket to be served again", first)
    shim.wait_registered("sock.dra.dev", timeout=60)
    assert first.alive()
