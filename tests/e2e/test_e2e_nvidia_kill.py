"""kill -9 of the real daemon at each journal point of the NVIDIA backend's MPS and VFIO work.

For every journal write of the backend's ``ctx.record`` calls (the kill point right after it:
``use/<gpu>``, ``mps/<gpu>`` steps holder / compute-mode / start / configure / ready,
``pci.rebind/<bdf>`` steps unbind / override / bind / clear / done), the daemon is armed with
``DRA_FRAMEWORK_KILL_AT`` (dra_framework/killpoints.py), dies there during prepare or unprepare,
is started again, and the kubelet's retry (prepare, then unprepare) must succeed and leave
nothing: no MPS control daemon process, ``mps.json`` empty, compute mode back to DEFAULT, the GPU
back on its nvidia driver with ``driver_override`` cleared, no checkpoint entry, no CDI spec.
The MPS case first shows the daemon surviving a driver restart while its claim is prepared."""
from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from dra_framework.killpoints import KILL_AT, KILL_LOG, read_log
from dra_framework.testing import FakePciKernel, wait_for

from dra_backends.nvidia.mps import find_daemon
from test_e2e_example import config

pytestmark = pytest.mark.k8s

ROOT = Path(__file__).resolve().parents[2]
HOST = ROOT / "examples" / "hosts" / "dgx-h100"
DRIVER = "gpu.nvidia.com"
GPU, BUS = "gpu-0000-1b-00-0", "0000:1b:00.0"
# Keys in sorted order: the status writer's server-side apply trips over unsorted opaque
# parameters (reported on the BOARD, owned by the engine's status writer).
MPS_CONFIG = {"apiVersion": "resource.nvidia.com/v1beta1", "kind": "GpuConfig",
              "sharing": {"mpsConfig": {"defaultActiveThreadPercentage": 25}, "strategy": "MPS"}}


def backend_points(names: list[str]) -> list[int]:
    """1-based kill points right after each of the backend's own journal writes (the point before
    a write leaves the same state as the one after the previous write)."""
    return [i + 1 for i, n in enumerate(names)
            if n.split()[0] == "record" and any(k in n for k in (" mps/", " use/", " pci.rebind/"))]


def _call(fn, *args):
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 - the daemon died under the call (grpc error)
        return exc


def _retry_unavailable(fn, *args):
    """gRPC keeps a failed unix-socket subchannel in back-off for a moment after the daemon died:
    retry UNAVAILABLE like the kubelet does (its next sync)."""
    import grpc

    deadline = time.monotonic() + 20
    while True:
        try:
            return fn(*args)
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _ok_prepare(daemon, claim) -> None:
    out = _retry_unavailable(daemon.prepare, [claim])
    err = next(iter(out.values())).error
    assert not err, err


def _ok_unprepare(daemon, claim) -> None:
    errs = _retry_unavailable(daemon.unprepare, [claim])
    assert not any(errs.values()), errs


def run_kill_cycles(daemon, claim, check_clean) -> list[str]:
    """Count the points (one clean prepare+unprepare), then kill at each backend point."""
    log = daemon.workdir / "killpoints.log"
    log.unlink(missing_ok=True)
    daemon.restart(env={KILL_LOG: str(log)})
    daemon.wait_running()
    _ok_prepare(daemon, claim)
    _ok_unprepare(daemon, claim)
    names = read_log(log)
    points = backend_points(names)
    assert points, names
    check_clean()
    killed_at = []
    for k in points:
        daemon.restart(env={KILL_AT: str(k)})
        daemon.wait_running()
        _call(daemon.prepare, [claim])
        if daemon.alive():
            _call(daemon.unprepare, [claim])
        assert daemon.wait_exit(60) == -signal.SIGKILL, f"kill point {k} ({names[k - 1]}) not reached"
        killed_at.append(names[k - 1])
        daemon.env = {}  # not armed any more
        daemon.start()
        daemon.wait_running()
        _ok_prepare(daemon, claim)  # the kubelet retries: rollback of the half-done attempt, then prepare
        _ok_unprepare(daemon, claim)
        check_clean()
    return killed_at


@pytest.fixture
def host(tmp_path):
    dst = tmp_path / "host"
    shutil.copytree(HOST, dst, symlinks=True)
    return dst


def _setup(k8s_objects, kubelet_shim, dra_driver, allocator, host, node, options, cls_type, claim_config=None):
    shim = kubelet_shim(node)
    cfg = config([{"name": "nvidia", "options": {
        "nvml": "fake", "hostRoot": str(host), "driverRoot": str(host), "hostDriverRoot": "/",
        "migStrategy": "none", "executor": "record", "healthCheck": False, **options}}], driver=DRIVER)
    daemon = dra_driver(cfg, shim)
    shim.wait_registered(DRIVER, timeout=90)
    k8s_objects.device_class(f"{cls_type}.nvidia", DRIVER, cel=f"device.attributes['{DRIVER}'].type == '{cls_type}'")
    spec: dict = {"devices": {"requests": [{"name": "r", "exactly": {
        "deviceClassName": f"{cls_type}.nvidia", "selectors": [{"cel": {"expression":
            f"device.attributes['resource.kubernetes.io'].pciBusID == '{BUS}'"}}]}}]}}
    if claim_config:
        spec["devices"]["config"] = [{"opaque": {"driver": DRIVER, "parameters": claim_config}}]
    wait_for(lambda: _published(k8s_objects, node, cls_type), 90, f"{cls_type} devices", proc=daemon)
    claim = k8s_objects.resource_claim("default", f"{cls_type}-claim", spec)
    allocator.allocate("default", f"{cls_type}-claim", node)
    return daemon, claim


def _published(k8s_objects, node, cls_type):
    from test_e2e_example import slices_of
    return any(d["attributes"]["type"]["string"] == cls_type
               for s in slices_of(k8s_objects, DRIVER, node) for d in s["spec"].get("devices", []))


def test_mps_daemon_survives_restart_and_kill9_at_every_mps_journal_point(
        kube_apiserver, k8s_objects, kubelet_shim, dra_driver, allocator, host):
    daemon, claim = _setup(k8s_objects, kubelet_shim, dra_driver, allocator, host, "kill-mps", {}, "gpu", MPS_CONFIG)
    state = daemon.state_dir / DRIVER / "nvidia"
    try:
        _ok_prepare(daemon, claim)
        pids = find_daemon(GPU)
        assert len(pids) == 1
        cdi = json.dumps([json.loads(p.read_text()) if p.suffix == ".json" else p.read_text() for p in daemon.cdi_specs()])
        assert "CUDA_MPS_PIPE_DIRECTORY=/tmp/nvidia-mps" in cdi and f"/run/nvidia-dra/mps/{GPU}/pipe" in cdi
        daemon.restart()
        daemon.wait_running()
        assert find_daemon(GPU) == pids, "a driver restart must not stop a daemon a claim uses"
        _ok_prepare(daemon, claim)  # the kubelet's repeat after its own restart: nothing new started
        assert find_daemon(GPU) == pids
        _ok_unprepare(daemon, claim)
        assert not find_daemon(GPU), "stopped after the last claim"

        def check_clean():
            assert not find_daemon(GPU)
            assert json.loads((state / "mps.json").read_text() or "{}") == {}
            cmds = [json.loads(line) for line in (state / "executor.jsonl").read_text().splitlines()]
            modes = [c[-1] for c in cmds if c[:1] == ["nvidia-smi"] and "-c" in c]
            assert not modes or modes[-1] == "DEFAULT", modes[-4:]
            assert not daemon.checkpoint() and not daemon.cdi_specs()
        killed = run_kill_cycles(daemon, claim, check_clean)
        assert {n.split()[-1].split("#")[0] for n in killed} >= {f"mps/{GPU}", f"use/{GPU}"}, killed
        print(f"MPS: killed at {len(killed)} points: {killed}")
    finally:
        for pid in find_daemon(GPU):
            os.kill(pid, signal.SIGKILL)


def test_vfio_kill9_at_every_rebind_journal_point(kube_apiserver, k8s_objects, kubelet_shim, dra_driver, allocator,
                                                  host):
    dev = host / "sys/bus/pci/devices" / BUS
    with FakePciKernel(host):
        daemon, claim = _setup(k8s_objects, kubelet_shim, dra_driver, allocator, host, "kill-vfio",
                               {"passthrough": True}, "vfio")

        def check_clean():
            assert os.path.basename(os.readlink(dev / "driver")) == "nvidia"
            assert (dev / "driver_override").read_text().strip() in ("", "(null)")
            assert not daemon.checkpoint() and not daemon.cdi_specs()
        killed = run_kill_cycles(daemon, claim, check_clean)
        steps = {json.dumps(n.split()[-1]) for n in killed}
        assert any("pci.rebind/" in s for s in steps), killed
        print(f"VFIO: killed at {len(killed)} points: {killed}")
