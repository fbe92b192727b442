"""`dra-framework run` serves the kubelet sockets before its drivers have started
(docs/operations.md#start-up): GetInfo is answered at once, calls wait for the start-up (bounded
by their deadline), a failed start-up answers each claim with its reason, and the daemon keeps
retrying behind the same sockets. Real executable, the kubelet's own plugin manager, a real
kube-apiserver; the backend's discovery waits on a file the test controls."""
from __future__ import annotations

import asyncio
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from dra_framework.kubelet import client
from dra_framework.kubelet.types import ClaimRef
from dra_framework.testing import wait_for
from test_e2e_example import config, slices_of

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "foundation"))
from test_hook_misuse import install  # noqa: E402

pytestmark = pytest.mark.k8s

DRIVER = "startup.dra.dev"

#: The example backend, with a discovery that waits until the file ``gate`` exists and fails
#: while ``<gate>.fail`` exists (a device or kernel driver that is not ready yet).
GATED = '''
import asyncio
import os

from pydantic import Field

from dra_framework import hookimpl
from dra_example_backend import ExampleBackend, Options as ExampleOptions


class Options(ExampleOptions):
    gate: str = Field(description="discovery waits for this file")


class Backend(ExampleBackend):
    @hookimpl
    async def dra_discover(self, inventory):
        while not os.path.exists(self.o.gate):
            if os.path.exists(self.o.gate + ".fail"):
                raise RuntimeError("sensor offline")
            await asyncio.sleep(0.05)
        return ExampleBackend.dra_discover(self, inventory)


@hookimpl
def dra_register_backends(register):
    register("gated", Backend, options=Options)
'''


def _gated_driver(dra_driver, shim, tmp_path: Path, gate: Path):
    site = tmp_path / "site"
    install(site, "gated", GATED)
    cfg = config([{"name": "gated", "options": {"count": 1, "gate": str(gate)}}], driver=DRIVER)
    return dra_driver(cfg, shim, env={"PYTHONPATH": str(site)}, wait=False)


def _this_run(daemon) -> str:
    return daemon.logs().rsplit("=== ", 1)[-1]


def _probe(daemon) -> tuple[int, str] | None:
    try:
        return daemon.probe("/readyz")
    except OSError:
        return None


def _watch_health(socket: str) -> str:
    async def watch() -> str:
        try:
            async for _ in client.watch_health(socket):
                return "streamed"
        except grpc.aio.AioRpcError as exc:
            return exc.code().name
        return "ended"
    return asyncio.run(watch())


def test_sockets_served_while_start_up_runs_and_calls_wait_for_it(kube_apiserver, k8s_objects, kubelet_shim,
                                                                   allocator, dra_driver, tmp_path):
    from lightkube.resources.resource_v1 import ResourceClaim

    node = "e2e-startup"
    shim = kubelet_shim(node)
    gate = tmp_path / "gate"
    gate.touch()
    daemon = _gated_driver(dra_driver, shim, tmp_path, gate)
    daemon.wait_running()
    shim.wait_registered(DRIVER, timeout=60)
    wait_for(lambda: slices_of(k8s_objects, DRIVER, node), 60, "ResourceSlices", proc=daemon)
    k8s_objects.device_class("startup-acc", DRIVER)
    k8s_objects.resource_claim("default", "c", {"devices": {"requests": [{
        "name": "acc", "exactly": {"deviceClassName": "startup-acc", "selectors": [{"cel": {
            "expression": f"device.attributes['{DRIVER}'].partition == false"}}]}}]}})
    k8s_objects.pod("default", "p-c", claims=["c"], node=node)
    allocator.allocate("default", "c", node, pod=("default", "p-c"))
    uid = k8s_objects.client.get(ResourceClaim, "c", namespace="default").metadata.uid
    claim = ClaimRef(uid, "default", "c")

    # Restart with discovery held: the kubelet registers the driver while it is still starting.
    assert daemon.stop() == 0, daemon.logs()
    gate.unlink()
    shim.restart()
    daemon.start()
    entry = shim.wait_registered(DRIVER, timeout=60)
    # GetInfo cannot know yet whether the driver has a health source: it always offers health.
    assert [v for v in entry["versions"] if "DRAResourceHealth" in v], entry
    assert "discovered" not in _this_run(daemon) and daemon.alive()
    status, body = wait_for(lambda: _probe(daemon), 30, "/readyz", proc=daemon)  # probes follow the sockets
    assert status != 200 and f"driver {DRIVER}: starting" in body, body

    # A call whose deadline ends first: a per-claim error the kubelet retries, not a gRPC error.
    out = daemon.prepare([claim], timeout=2)
    assert out[uid].error == f"driver {DRIVER} is still starting (retry)", out

    with ThreadPoolExecutor(2) as pool:
        waiting = pool.submit(daemon.prepare, [claim], None, 45)
        health = pool.submit(_watch_health, daemon.sockets().dra)
        time.sleep(1)
        assert not waiting.done() and not health.done()
        gate.touch()  # discovery finishes, the driver starts, the waiting calls are answered
        out = waiting.result(timeout=60)
        # The example backend has no health source: the stream that waited is refused cleanly.
        assert health.result(timeout=60) == "UNIMPLEMENTED"
    assert not out[uid].error, out
    assert out[uid].devices[0].cdi_device_ids[0].startswith(f"k8s.{DRIVER}/claim=")
    assert "discovered" in _this_run(daemon)
    assert uid in daemon.checkpoint()
    assert daemon.unprepare([claim]) == {uid: ""}
    assert daemon.stop() == 0, daemon.logs()


def test_failed_start_up_keeps_the_sockets_and_names_the_failure_per_claim(kube_apiserver, kubelet_shim,
                                                                           dra_driver, tmp_path):
    shim = kubelet_shim("e2e-startup-failed")
    gate = tmp_path / "gate"
    Path(f"{gate}.fail").touch()
    daemon = _gated_driver(dra_driver, shim, tmp_path, gate)
    shim.wait_registered(DRIVER, timeout=60)
    wait_for(lambda: f"driver {DRIVER} did not start" in _this_run(daemon), 60, "the failed start-up", proc=daemon)

    claim = ClaimRef("6a1c7e0e-7a51-4f0c-9d4c-000000000001", "default", "c")
    t0 = time.monotonic()
    out = daemon.prepare([claim], timeout=30)
    assert time.monotonic() - t0 < 10  # answered at once, not at the deadline
    why = f"driver {DRIVER} backend gated: dra_discover failed: RuntimeError: sensor offline"
    assert out[claim.uid].error == f"driver {DRIVER} did not start: {why}", out
    assert daemon.unprepare([claim], timeout=30) == {claim.uid: f"driver {DRIVER} did not start: {why}"}
    status, body = wait_for(lambda: _probe(daemon), 30, "/readyz", proc=daemon)
    assert status != 200 and f"driver {DRIVER}: did not start: {why}" in body, body
    assert daemon.alive()

    # The device comes up: the retried start-up serves behind the same, still registered sockets.
    Path(f"{gate}.fail").unlink()
    gate.touch()
    wait_for(lambda: f"driver {DRIVER} started after a failed start-up" in _this_run(daemon), 60, "the retry",
             proc=daemon)
    assert daemon.unprepare([claim], timeout=30) == {claim.uid: ""}  # unknown claim: nothing to undo
    assert shim.registered()["drivers"][DRIVER]
    assert daemon.stop() == 0, daemon.logs()


def test_rolling_update_keeps_the_old_instance_registered_until_the_new_one_has_started(
        kube_apiserver, kubelet_shim, dra_driver, tmp_path):
    """With another live instance (a surge rolling update), the new pod binds its sockets only
    once started, as before: the kubelet keeps calling the old pod meanwhile, and a new pod that
    fails to start never takes the calls away from it."""
    shim = kubelet_shim("e2e-startup-rolling")
    gate = tmp_path / "gate"
    gate.touch()
    site = tmp_path / "site"
    install(site, "gated", GATED)
    cfg = config([{"name": "gated", "options": {"count": 1, "gate": str(gate)}}], driver=DRIVER)
    cfg["podUID"] = "pod-old"
    old = dra_driver(cfg, shim, name="old", env={"PYTHONPATH": str(site)})
    assert shim.wait_registered(DRIVER, timeout=60)["endpoint"].endswith("dra-pod-old.sock")

    gate.unlink()
    new = old.clone("new", podUID="pod-new").start()
    wait_for(lambda: "another instance serves" in new.logs(), 60, "the new instance to find the old one", proc=new)
    time.sleep(1)
    assert shim.registered()["drivers"][DRIVER]["endpoint"].endswith("dra-pod-old.sock")
    assert not Path(new.sockets().registration).exists()
    gate.touch()
    wait_for(lambda: shim.registered()["drivers"][DRIVER]["endpoint"].endswith("dra-pod-new.sock"), 60,
             "registration of the new instance", proc=new)
    assert old.stop() == 0 and new.stop() == 0
