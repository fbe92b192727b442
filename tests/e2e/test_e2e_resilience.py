"""The daemon heals itself instead of crash-looping: a driver whose hardware is not there yet is
retried, a second instance cannot steal a live driver's sockets, and sockets that vanish are
served again so the kubelet re-registers the driver."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dra_framework.testing import wait_for
from test_e2e_example import config, slices_of, complete_slices_of

pytestmark = pytest.mark.k8s

ROOT = Path(__file__).resolve().parents[2]


def test_driver_whose_hardware_appears_later_starts_on_retry(kube_apiserver, k8s_objects, kubelet_shim,
                                                             dra_driver, tmp_path):
    node = "e2e-late"
    shim = kubelet_shim(node)
    host = tmp_path / "host"            # the sample host is not there yet
    cfg = config([{"name": "nvidia", "options": {
        "nvml": "fake", "hostRoot": str(host), "driverRoot": str(host), "hostDriverRoot": "/",
        "executor": "record"}}], driver="late.nvidia.com")
    daemon = dra_driver(cfg, shim)
    wait_for(lambda: "retrying start-up" in daemon.logs(), 60, "a failed start and a retry", proc=daemon)
    assert daemon.alive()
    shutil.copytree(ROOT / "examples" / "hosts" / "dgx-h100", host, symlinks=True)
    shim.wait_registered("late.nvidia.com", timeout=90)
    assert wait_for(lambda: complete_slices_of(k8s_objects, "late.nvidia.com", node), 60, "slices", proc=daemon)


def test_second_instance_cannot_take_over_and_lost_sockets_come_back(kube_apiserver, kubelet_shim,
                                                                    dra_driver):
    node = "e2e-sockets"
    shim = kubelet_shim(node)
    cfg = config([{"name": "example", "options": {"count": 1}}], driver="sock.dra.dev")
    first = dra_driver(cfg, shim)
    shim.wait_registered("sock.dra.dev", timeout=60)
    reg = shim.root / "plugins_registry" / "sock.dra.dev-reg.sock"
    inode = reg.stat().st_ino

    second = first.clone("second").start()
    wait_for(lambda: "another process is serving DRA driver sock.dra.dev" in second.logs(), 60,
             "the second instance to refuse the live sockets", proc=second)
    assert second.stop() == 0
    assert reg.exists() and reg.stat().st_ino == inode, "the first instance's socket was replaced"

    reg.unlink()                       # someone cleans the registry directory
    wait_for(lambda: reg.exists(), 40, "the registration socket to be served again", proc=first)
    shim.wait_registered("sock.dra.dev", timeout=60)
    assert first.alive()


class TcpForwarder:
    """Forwards 127.0.0.1:``port`` to ``target`` byte for byte: the API server "coming back" on
    the port a daemon's kubeconfig names (TLS passes through untouched)."""

    def __init__(self, port: int, target: tuple[str, int]) -> None:
        import socket
        import threading

        self.target = target
        self.sock = socket.create_server(("127.0.0.1", port), reuse_port=False)
        self.closed = False
        self.conns: list = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        while not self.closed:
            try:
                conn, _ = self.sock.accept()
                upstream = socket.create_connection(self.target)
            except OSError:
                continue
            self.conns += [conn, upstream]
            for a, b in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src, dst) -> None:
        import socket

        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        """Stop listening and cut every forwarded connection (the API server "goes away")."""
        import socket

        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); close alone may not
        except OSError:
            pass
        self.sock.close()
        for c in self.conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def test_restart_against_dead_api_server_serves_unprepare_then_publishes(
        kube_apiserver, k8s_objects, kubelet_shim, allocator, dra_driver, tmp_path):
    """The daemon restarts while the API server is unreachable: the kubelet sockets come up from
    the checkpoint, a checkpointed claim unprepares, a new prepare fails naming the API server,
    /readyz and the reachability metric show it; once the server answers again on the same
    address, the Node is looked up and ResourceSlices are published."""
    import json
    import os
    from urllib.parse import urlsplit

    import yaml
    from lightkube.resources.resource_v1 import ResourceSlice as RS

    from dra_framework.testing import ShimError
    from dra_framework.testing.k8s import free_port

    driver, node = "noapi.dra.dev", "e2e-noapi"
    shim = kubelet_shim(node)
    daemon = dra_driver(config([{"name": "example", "options": {"count": 2}}], driver=driver), shim)
    shim.wait_registered(driver, timeout=60)
    wait_for(lambda: complete_slices_of(k8s_objects, driver, node), 60, "slices", proc=daemon)
    k8s_objects.device_class("noapi-acc", driver)
    for name in ("c1", "c2"):
        k8s_objects.resource_claim("default", name, {"devices": {"requests": [{"name": "a", "exactly": {
            "deviceClassName": "noapi-acc"}}]}})
        k8s_objects.pod("default", f"p-{name}", claims=[name], node=node)
        allocator.allocate("default", name, node, pod=("default", f"p-{name}"))
    uid = shim.prepare_pod("default", "p-c1").claims["c1"]["uid"]
    assert [f for f in os.listdir(daemon.cdi_dir) if uid in f]

    assert daemon.stop() == 0, daemon.logs()
    shim.wait_deregistered(driver)
    dead_port = free_port()
    kc = yaml.safe_load(kube_apiserver.kubeconfig.read_text())
    real = urlsplit(kc["clusters"][0]["cluster"]["server"])
    kc["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{dead_port}"
    dead = tmp_path / "dead.kubeconfig"
    dead.write_text(json.dumps(kc))
    cut_off = daemon.clone("dead-api", kubeconfig=str(dead)).start()

    shim.wait_registered(driver, timeout=60)
    cut_off.wait_running(30)
    code, body = wait_for(lambda: (lambda r: r if r[0] == 503 else None)(cut_off.probe("/readyz")), 30,
                          "/readyz to report the API server", proc=cut_off)
    assert "API server" in body, body
    assert "dra_framework_api_server_reachable 0.0" in cut_off.metrics()
    with pytest.raises(ShimError) as failed:
        shim.prepare_pod("default", "p-c2")
    assert f"127.0.0.1:{dead_port}" in str(failed.value)
    shim.unprepare_pod("default", "p-c1")                 # needs no API server
    assert not [f for f in os.listdir(daemon.cdi_dir) if uid in f]
    assert "Traceback" not in cut_off.logs()

    for s in slices_of(k8s_objects, driver, node):
        k8s_objects.client.delete(RS, s["metadata"]["name"])
    proxy = TcpForwarder(dead_port, (real.hostname, real.port))
    try:
        wait_for(lambda: complete_slices_of(k8s_objects, driver, node), 90, "slices after the API server is back",
                 proc=cut_off)
        wait_for(lambda: cut_off.probe("/readyz") == (200, "ok\n"), 60, "/readyz ok", proc=cut_off)
        assert "dra_framework_api_server_reachable 1.0" in cut_off.metrics()
        assert shim.prepare_pod("default", "p-c2")["c2"]
    finally:
        proxy.close()
    assert cut_off.alive()


def test_api_server_outage_while_running_shows_and_clears(kube_apiserver, k8s_objects, kubelet_shim, dra_driver,
                                                          tmp_path):
    """The API server goes away under a running daemon and comes back on the same address: /readyz
    and the metric report it while it is away and clear once it answers (the slice watch's
    reconnect notices), without a restart; the kubelet is served throughout."""
    import json
    from urllib.parse import urlsplit

    import yaml

    from dra_framework.testing.k8s import free_port

    driver, node = "blip.dra.dev", "e2e-blip"
    shim = kubelet_shim(node)
    port = free_port()
    kc = yaml.safe_load(kube_apiserver.kubeconfig.read_text())
    real = urlsplit(kc["clusters"][0]["cluster"]["server"])
    kc["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{port}"
    (tmp_path / "via-proxy.kubeconfig").write_text(json.dumps(kc))
    proxy = TcpForwarder(port, (real.hostname, real.port))
    unused = dra_driver(config([{"name": "example", "options": {"count": 1}}], driver=driver), shim, start=False)
    daemon = unused.clone("via-proxy", kubeconfig=str(tmp_path / "via-proxy.kubeconfig")).start().wait_running()
    try:
        shim.wait_registered(driver, timeout=60)
        wait_for(lambda: daemon.probe("/readyz") == (200, "ok\n"), 60, "/readyz ok", proc=daemon)
        proxy.close()
        body = wait_for(lambda: (lambda r: r[1] if r[0] == 503 else None)(daemon.probe("/readyz")), 60,
                        "/readyz to report the outage", proc=daemon)
        assert f"API server https://127.0.0.1:{port} unreachable" in body, body
        assert "dra_framework_api_server_reachable 0.0" in daemon.metrics()
        assert driver in shim.registered()["drivers"]
        proxy = TcpForwarder(port, (real.hostname, real.port))
        wait_for(lambda: daemon.probe("/readyz") == (200, "ok\n"), 90, "/readyz ok again", proc=daemon)
        assert "dra_framework_api_server_reachable 1.0" in daemon.metrics()
    finally:
        proxy.close()
