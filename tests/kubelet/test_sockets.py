"""Socket naming (docs/protocol.md#socket-names) and stale-socket handling
(docs/failure-modes.md#stale-sockets-after-a-kill-or-a-rolling-update)."""
from __future__ import annotations

import base64
import hashlib
import os
import socket

import pytest

from dra_framework.kubelet.sockets import (
    KUBELET_ROOT_MAX,
    remove_socket,
    remove_stale_sockets,
    rolling_update_registrar_socket_file,
    socket_paths,
)

REG = "/var/lib/kubelet/plugins_registry"
UID = "ad4af911-5bcd-47c5-a554-f35cea869472"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_default_paths():
    p = socket_paths("gpu.example.com")
    assert p.registration == f"{REG}/gpu.example.com-reg.sock"
    assert p.dra == "/var/lib/kubelet/plugins/gpu.example.com/dra.sock"


def test_custom_root_and_pod_uid():
    p = socket_paths("gpu.example.com", "/srv/kl", pod_uid="1111")
    assert p.registration == "/srv/kl/plugins_registry/gpu.example.com-1111-reg.sock"
    assert p.dra == "/srv/kl/plugins/gpu.example.com/dra-1111.sock"


def test_rolling_update_forms():
    # Form 1 when it fits; lengths from the dra-example-driver chart test:
    # a 27-byte driver with the default registry dir gives exactly 107 bytes.
    d27 = "a" * 15 + ".example.org"
    name = rolling_update_registrar_socket_file(REG + "/./", d27, UID)
    assert name == f"{d27}-{UID}-reg.sock" and len(os.path.join(REG, name)) == 107
    # Form 2: one byte more does not fit.
    d28 = "a" * 16 + ".example.org"
    name = rolling_update_registrar_socket_file(REG, d28, UID)
    assert name == f"{d28}-{b64(hashlib.sha256(UID.encode()).digest()[:8])}-reg.sock"
    # Form 3: driver name omitted.
    long = "a" * 100
    name = rolling_update_registrar_socket_file(REG, long, UID)
    assert name == f"dra-{b64(hashlib.sha256((long + chr(0) + UID).encode()).digest()[:16])}-reg.sock"
    # Form 3 is 35 bytes: a 71-byte directory is the longest that fits.
    assert len("/" + "r" * 70 + "/" + name) == 107


def test_every_valid_driver_name_fits_every_kubelet_root():
    """Up to 63-byte driver names, with and without a pod UID, under every kubelet root up to the
    kubelet's own limit: both paths fit, stay in their directories and are distinct per driver
    and pod UID; names that fit keep the Go helper's form."""
    seen: dict[str, tuple] = {}
    for root_len in (len(ROOT_DEFAULT := "/var/lib/kubelet"), 40, 54, 55, 70, KUBELET_ROOT_MAX):
        root = ROOT_DEFAULT if root_len == len(ROOT_DEFAULT) else "/" + "r" * (root_len - 1)
        for n in (1, 27, 34, 37, 50, 63):
            driver = ("d" * n)[:n]
            for uid in (None, UID, "22222222-2222-3333-4444-555555555555"):
                p = socket_paths(driver, root, pod_uid=uid)
                for path in (p.registration, p.dra):
                    assert len(path.encode()) <= 107, path
                    assert not os.path.basename(path).startswith(".")
                    assert seen.setdefault(path, (root, driver, uid)) == (root, driver, uid), path
                assert os.path.dirname(p.registration) == f"{root}/plugins_registry"
                assert os.path.dirname(p.dra) in (f"{root}/plugins/{driver}", f"{root}/plugins")
                assert p == socket_paths(driver, root, pod_uid=uid)  # deterministic
    p = socket_paths("abcdef.dra-example-driver.sigs.k8s.io", pod_uid=UID)
    assert p.fallback == () and p.dra.endswith(f"dra-{b64(hashlib.sha256(UID.encode()).digest()[:8])}.sock")
    assert socket_paths("gpu.example.com", pod_uid=UID).dra.endswith(f"/dra-{UID}.sock")


def test_path_too_long():
    with pytest.raises(ValueError, match="limit 107"):
        socket_paths("a" * 34, "/" + "r" * 100, pod_uid=UID)
    with pytest.raises(ValueError):
        socket_paths("bad/name")


def _dead_socket(path: str) -> None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.close()  # file stays, nobody listens


def test_remove_stale_sockets(kroot):
    driver = "gpu.example.com"
    p = socket_paths(driver, kroot, pod_uid="new")
    os.makedirs(p.plugin_dir)
    old_reg = os.path.join(p.registry_dir, f"{driver}-old-reg.sock")
    old_dra = os.path.join(p.plugin_dir, "dra-old.sock")
    other = os.path.join(p.registry_dir, "other.example.com-reg.sock")
    for path in (p.registration, p.dra, old_reg, old_dra, other):
        _dead_socket(path)
    live_path = os.path.join(p.registry_dir, f"{driver}-peer-reg.sock")
    live = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    live.bind(live_path)
    live.listen()
    try:
        removed = remove_stale_sockets(p, driver)
    finally:
        live.close()
    assert set(removed) == {p.registration, p.dra, old_reg, old_dra}
    assert os.path.exists(other) and os.path.exists(live_path)


def test_remove_socket_refuses_regular_file(kroot):
    path = os.path.join(kroot, "x.sock")
    open(path, "w").close()
    with pytest.raises(FileExistsError):
        remove_socket(path)
    assert not remove_socket(os.path.join(kroot, "missing.sock"))


def test_crashed_instances_hashed_sockets_are_removed(kroot):
    """Fallback names carry no driver name: the record each instance leaves in the plugin dir
    lets the next one remove a crashed pod's dead sockets, never a live pod's."""
    from dra_framework.kubelet.sockets import record_sockets

    root = os.path.join(kroot, "r" * (KUBELET_ROOT_MAX - len(kroot) - 1))
    os.makedirs(os.path.join(root, "plugins_registry"))
    driver = "a" * 20 + "." + "b" * 20 + "." + "c" * 21
    dead, live, new = (socket_paths(driver, root, pod_uid=u) for u in ("dead-pod", "live-pod", "new-pod"))
    assert dead.fallback == ("registration", "dra")
    os.makedirs(dead.plugin_dir)
    for p in (dead.registration, dead.dra):
        _dead_socket(p)
    record_sockets(dead)
    servers = []
    for p in (live.registration, live.dra):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(p)
        s.listen(1)
        servers.append(s)
    record_sockets(live)
    removed = remove_stale_sockets(new, driver)
    assert sorted(removed) == sorted([dead.registration, dead.dra])
    assert os.path.exists(live.registration) and os.path.exists(live.dra)
    records = sorted(n for n in os.listdir(new.plugin_dir) if n.startswith("sockets-"))
    assert len(records) == 1  # the dead pod's record went with its sockets
    for s in servers:
        s.close()
