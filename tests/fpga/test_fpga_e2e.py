"""End to end with the fpga backend on a copy of the D5005 sample host: the real daemon publishes
to a real kube-apiserver, the scheduler's allocator picks a port by interfaceId, the kubelet's DRA
code prepares it with an FpgaConfig that loads another function (the fake executor records the
programming, the republished slice shows the new afuId); bad images fail with a clear error and
the card unchanged; kill -9 while programming, then a restart, leaves the card tainted or
restored, never silently half-programmed. Runs at every harness version (DRA_HARNESS_K8S_VERSION)."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
from fpga_helpers import REPO, afu

from dra_backends.fpga.fake.images import make_gbs
from dra_framework.testing import KILL_AT, KILL_LOG, ShimError, read_kill_log, wait_for

pytestmark = pytest.mark.k8s
DRIVER = "fpga.dra-framework.io"
IFACE = "d51533adaee65dab80fba44bbf579b68"
HOST_CHAN, HELLO = "76d7ae9cf66b461f816a5428bcebdbc5", "c6aa954a9b914a37abc11d9f0709dcc3"
DEV, VF = "dfl-0000-3b-00-2-port1", "0000:3b:00.2"
API = "fpga.dra-framework.io/v1alpha1"


def _host(tmp_path: Path) -> Path:
    host = tmp_path / "host"
    shutil.copytree(REPO / "examples/hosts/fpga-d5005", host, symlinks=True)
    return host


def _config(host: Path, **options) -> dict:
    return {"janitorIntervalSeconds": 5, "drivers": [{"name": DRIVER, "backends": [{"name": "fpga", "options": {
        "hostRoot": str(host), "imageDirs": ["/srv/intel.com/fpga"], "executor": "fake", "hotplug": False,
        "healthIntervalSeconds": 1, **options}}]}]}


def devices(objects, node: str) -> dict[str, dict]:
    from lightkube.resources.resource_v1 import ResourceSlice as RS
    out = {}
    for s in objects.client.list(RS, fields={"spec.driver": DRIVER}):
        d = s.to_dict() if hasattr(s, "to_dict") else dict(s)
        if d["spec"].get("nodeName") == node:
            out.update({x["name"]: x for x in d["spec"].get("devices", [])})
    return out


def attr(dev: dict, name: str):
    return next(iter(dev["attributes"][name].values()))


def taints(dev: dict) -> list[tuple[str, str]]:
    return [(t["key"], t.get("value", "")) for t in dev.get("taints") or []]


def _claim(objects, name: str, selector: str, params: dict | None) -> None:
    spec: dict = {"devices": {"requests": [{"name": "fpga", "exactly": {
        "deviceClassName": DRIVER, "selectors": [{"cel": {"expression": selector}}]}}]}}
    if params is not None:
        spec["devices"]["config"] = [{"requests": ["fpga"], "opaque": {"driver": DRIVER, "parameters": {
            "apiVersion": API, "kind": "FpgaConfig", **params}}}]
    objects.resource_claim("default", name, spec)


def _executor_calls(daemon) -> list[dict]:
    p = daemon.state_dir / DRIVER / "fpga" / "executor.jsonl"
    return [json.loads(line) for line in p.read_text().splitlines()] if p.exists() else []


def _start(kubelet_shim, dra_driver, k8s_objects, node, cfg, env=None):
    shim = kubelet_shim(node)
    daemon = dra_driver(cfg, shim, env=env)
    shim.wait_registered(DRIVER, timeout=90)
    wait_for(lambda: len(devices(k8s_objects, node)) == 3, 90, "the D5005's three ports published", proc=daemon)
    k8s_objects.device_class(DRIVER, DRIVER)
    return shim, daemon


def test_claim_by_interface_id_loads_another_function(kube_apiserver, k8s_objects, kubelet_shim, allocator,
                                                      cdi_check, dra_driver, tmp_path):
    node = "e2e-fpga"
    host = _host(tmp_path)
    shim, daemon = _start(kubelet_shim, dra_driver, k8s_objects, node,
                          _config(host, defaultFunctions={IFACE: HOST_CHAN}))
    _claim(k8s_objects, "hello", f"device.attributes['{DRIVER}'].interfaceId == '{IFACE}' && "
                                 f"device.attributes['{DRIVER}'].afuId == '{HOST_CHAN}'", {"afuId": HELLO})
    k8s_objects.pod("default", "p-hello", claims=["hello"], node=node)
    result = allocator.allocate("default", "hello", node, pod=("default", "p-hello"))
    assert result["devices"]["results"][0]["device"] == DEV

    prepared = shim.prepare_pod("default", "p-hello")
    edits = json.dumps(cdi_check(daemon.cdi_dir, prepared["hello"]))
    assert f"FPGA_AFU_ID={HELLO}" in edits and "/dev/dfl-port.1" in edits
    [call] = _executor_calls(daemon)
    assert call["device"] == DEV and call["afuId"] == HELLO and call["fmeNode"] == "/dev/dfl-fme.0"
    assert afu(host, VF) == HELLO
    status = k8s_objects.get("ResourceClaim", "hello", "default")["status"]["devices"]
    assert [(d["device"], d["data"]["afuId"]) for d in status] == [(DEV, HELLO)]  # {apiVersion, kind, afuId}: unsorted keys
    wait_for(lambda: attr(devices(k8s_objects, node)[DEV], "afuId") == HELLO, 30,
             "the republished slice to show the new afuId", proc=daemon)

    shim.unprepare_pod("default", "p-hello")  # loads the default function again
    assert afu(host, VF) == HOST_CHAN and [c["afuId"] for c in _executor_calls(daemon)] == [HELLO, HOST_CHAN]
    wait_for(lambda: attr(devices(k8s_objects, node)[DEV], "afuId") == HOST_CHAN, 30, "afuId back", proc=daemon)


def test_bad_images_fail_clearly_and_leave_the_card_unchanged(kube_apiserver, k8s_objects, kubelet_shim, allocator,
                                                             dra_driver, tmp_path):
    node = "e2e-fpga-bad"
    host = _host(tmp_path)
    outside = tmp_path / "outside.gbs"
    outside.write_bytes(make_gbs(IFACE, HELLO, "not-allowed"))
    os.symlink(outside, host / f"srv/intel.com/fpga/{IFACE}/escape.gbs")
    shim, daemon = _start(kubelet_shim, dra_driver, k8s_objects, node, _config(host))
    before = {bdf: afu(host, bdf) for bdf in ("0000:3b:00.1", "0000:3b:00.2", "0000:3b:00.3")}
    real = hashlib.sha256(make_gbs(IFACE, HELLO, "hello_world")).hexdigest()
    cases = {
        "escape": ("0000:3b:00.1", {"image": f"{IFACE}/escape.gbs"},
                   f"resolves to {outside} outside the allowed image directory /srv/intel.com/fpga"),
        "digest": ("0000:3b:00.2", {"afuId": HELLO, "sha256": "1" * 64},
                   f"sha256 {real} does not match the config's {'1' * 64}"),
        "iface": ("0000:3b:00.3", {"image": "bfac4d851ee856fe8c95865ce1bbaa2d/f7df405cbd7acf7222f144b0b93acd18.gbs"},
                  f"built for interface bfac4d851ee856fe8c95865ce1bbaa2d, but device dfl-0000-3b-00-3-port2 has "
                  f"interface {IFACE}; nothing was written"),
    }
    for name, (bdf, params, message) in cases.items():
        _claim(k8s_objects, name, f"device.attributes['resource.kubernetes.io'].pciBusID == '{bdf}'", params)
        k8s_objects.pod("default", f"p-{name}", claims=[name], node=node)
        allocator.allocate("default", name, node, pod=("default", f"p-{name}"))
        with pytest.raises(ShimError) as err:
            shim.prepare_pod("default", f"p-{name}")
        assert message in str(err.value), str(err.value)
        print(f"{name}: {str(err.value)[-400:]}")
    assert {bdf: afu(host, bdf) for bdf in before} == before
    assert _executor_calls(daemon) == [] and not list(daemon.cdi_dir.glob("*.json"))
    assert all(not taints(d) for d in devices(k8s_objects, node).values())


def test_kill_while_programming_leaves_the_card_tainted_or_restored(kube_apiserver, k8s_objects, kubelet_shim,
                                                                   allocator, dra_driver, tmp_path):
    node = "e2e-fpga-kill"
    host = _host(tmp_path)
    log = tmp_path / "kill.log"
    shim, daemon = _start(kubelet_shim, dra_driver, k8s_objects, node,
                          _config(host, defaultFunctions={IFACE: HOST_CHAN}), env={KILL_LOG: str(log)})
    _claim(k8s_objects, "hello", f"device.attributes['{DRIVER}'].afuId == '{HOST_CHAN}'", {"afuId": HELLO})
    k8s_objects.pod("default", "p", claims=["hello"], node=node)
    allocator.allocate("default", "hello", node, pod=("default", "p"))
    shim.prepare_pod("default", "p")
    points = read_kill_log(log)
    shim.unprepare_pod("default", "p")
    assert afu(host, VF) == HOST_CHAN
    # the points of a programming prepare: the journal before the write, the write itself (the
    # region reads all-ones), the journal after it, the end of dra_prepare
    picks = [i + 1 for i, p in enumerate(points)
             if p.startswith(f"record fpga fpga.program/{DEV}") or p == "fpga fake-executor mid-write"
             or p.startswith(f"before-record fpga fpga.program/{DEV}") or p == "after dra_prepare fpga"]
    assert any(points[i - 1] == "fpga fake-executor mid-write" for i in picks), points
    seen = []
    for n in picks:
        first = shim.registered()["drivers"][DRIVER]["since"]
        daemon.restart(env={KILL_AT: str(n)})
        wait_for(lambda first=first: shim.registered()["drivers"].get(DRIVER, {}).get("since") not in (None, first),
                 60, "re-registration", proc=daemon)
        with pytest.raises(ShimError):
            shim.prepare_pod("default", "p")
        daemon.wait_exit()
        first = shim.registered()["drivers"].get(DRIVER, {}).get("since")
        daemon.restart(env={})
        wait_for(lambda first=first: shim.registered()["drivers"].get(DRIVER, {}).get("since") not in (None, first),
                 60, "re-registration after the crash", proc=daemon)
        now = afu(host, VF)

        def consistent(now=now):
            d = devices(k8s_objects, node).get(DEV)
            if d is None:
                return None
            t = taints(d)
            if ("fpga.dra-framework.io/programming", "interrupted") in t:
                return "tainted"
            if now in (HOST_CHAN, HELLO) and attr(d, "afuId") == now and not t:
                return "restored" if now == HOST_CHAN else "complete"
            return None
        state = wait_for(consistent, 30, f"kill point {n} ({points[n - 1]}): tainted or consistent", proc=daemon)
        if now not in (HOST_CHAN, HELLO):
            assert state == "tainted", f"half-programmed ({now}) without a taint after kill point {points[n - 1]}"
        seen.append((points[n - 1], now[:8], state))
        # the kubelet's next call: prepare again, then the pod ends
        shim.prepare_pod("default", "p")
        assert afu(host, VF) == HELLO
        wait_for(lambda: not taints(devices(k8s_objects, node)[DEV]), 30, "taints cleared", proc=daemon)
        shim.unprepare_pod("default", "p")
        assert afu(host, VF) == HOST_CHAN
    print(seen)
    assert ("fpga fake-executor mid-write", "ffffffff", "tainted") in seen, seen
