"""The README's main job: the node daemon on the bundled DGX-H100 sample host, against a real
etcd + kube-apiserver and the kubelet's own DRA code (the Go harness, built by demo.sh).

Steps shown: the daemon registers with the kubelet code and publishes ResourceSlices; the
scheduler's structured allocator allocates a claim for a 1g.10gb MIG partition; the kubelet code
prepares the pod (the daemon creates the MIG instance in the fake NVML and writes a CDI spec);
then the daemon keeps running until Ctrl-C (or --seconds), and everything is stopped cleanly.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from dra_framework.testing import k8s
from dra_framework.testing.objects import Objects

ROOT = Path(__file__).resolve().parents[1]
DRIVER = "gpu.nvidia.com"


def say(msg: str) -> None:
    print(f"\n==> {msg}", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=0, help="stop after this long (0: until Ctrl-C)")
    args = ap.parse_args()
    # SIGTERM (e.g. from a process supervisor) stops the demo as cleanly as Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    work = Path(tempfile.mkdtemp(prefix="dra-demo-"))
    node = "demo-node"
    procs = []
    cp = shim = daemon = None
    try:
        say(f"starting etcd and kube-apiserver {k8s.k8s_version()} (work dir {work})")
        bins = k8s.find_bins()
        cp = k8s.ControlPlane(bins, work / "cp", k8s.k8s_version()).start()
        objects = Objects(cp.client())
        objects.node(node)
        say("starting the kubelet's plugin manager and DRA manager (kubelet-dra-shim)")
        shim = k8s.KubeletShim(bins, cp.kubeconfig, node, work / "kubelet", work / "logs",
                               feature_gates=cp.feature_gates).start()
        host = ROOT / "examples" / "hosts" / "dgx-h100"
        config = {
            "nodeName": node, "kubeletRootDir": str(shim.root), "cdiRoot": str(work / "cdi"),
            "stateDir": str(work / "state"), "kubeconfig": str(cp.kubeconfig), "healthzPort": 0,
            "drivers": [{"name": DRIVER, "backends": [{"name": "nvidia", "options": {
                "nvml": "fake", "hostRoot": str(host), "driverRoot": str(host), "hostDriverRoot": "/",
                "migStrategy": "dynamic", "executor": "record"}}]}],
        }
        cfg = work / "config.yaml"
        cfg.write_text(yaml.safe_dump(config))
        say(f"dra-framework run --config {cfg}")
        log = open(work / "daemon.log", "w")
        daemon = subprocess.Popen([str(Path(sys.executable).parent / "dra-framework"), "run", "--config", str(cfg)],
                                  stdout=log, stderr=subprocess.STDOUT)
        procs.append(daemon)
        shim.wait_registered(DRIVER, timeout=120)
        say("registered with the kubelet code; ResourceSlices published:")
        # All slices of the pool, not just the first: the allocator skips an incomplete pool.
        slices = k8s.wait_for(lambda: (lambda items: items if k8s.pools_complete(items) else None)(
            cp.get(f"/apis/resource.k8s.io/v1/resourceslices?fieldSelector=spec.driver%3D{DRIVER}")["items"]),
            60, f"a complete {DRIVER} pool", interval=0.5)
        for s in slices:
            n = len(s["spec"].get("devices", []))
            c = len(s["spec"].get("sharedCounters", []))
            print(f"   {s['metadata']['name']}: {n} devices, {c} counter sets")
        objects.device_class("mig.nvidia.com", DRIVER, cel=f"device.attributes['{DRIVER}'].type == 'mig'")
        objects.resource_claim("default", "mig-claim", {"devices": {"requests": [{"name": "mig", "exactly": {
            "deviceClassName": "mig.nvidia.com",
            "selectors": [{"cel": {"expression": f"device.attributes['{DRIVER}'].profile == '1g.10gb'"}}]}}]}})
        objects.pod("default", "demo-pod", claims=["mig-claim"], node=node)
        alloc = k8s.Allocator(bins, cp.kubeconfig).allocate("default", "mig-claim", node, pod=("default", "demo-pod"))
        say(f"allocator chose {alloc['devices']['results'][0]['device']}; preparing the pod through the kubelet code")
        prepared = shim.prepare_pod("default", "demo-pod")
        ids = prepared["mig-claim"]
        print(f"   CDI device IDs: {ids}")
        resolved = k8s.cdi_check(bins, work / "cdi", ids)
        edits = resolved.get("edits", {})
        say("the reference CDI library resolves them, as a container runtime would, to:")
        for node in edits.get("deviceNodes") or []:
            print(f"   device node {node.get('path')}  (type {node.get('type')}, {node.get('major')}:{node.get('minor')})")
        for env in edits.get("env") or []:
            print(f"   env {env}")
        print(f"   {len(edits.get('mounts') or [])} read-only mounts of the driver's libraries and binaries")
        print(f"   specs in {work / 'cdi'}: {sorted(f.name for f in (work / 'cdi').iterdir())}")
        say("daemon running (logs: %s; set DRA_DEMO_KEEP=1 to keep them); press Ctrl-C to stop"
            % (work / "daemon.log"))
        print("   the CLI is .venv/bin/dra-framework (or `source .venv/bin/activate`); add a backend "
              "with .venv/bin/pip install -e path/to/backend (docs/backends.md)", flush=True)
        end = time.monotonic() + args.seconds if args.seconds else None
        while daemon.poll() is None and (end is None or time.monotonic() < end):
            time.sleep(0.5)
        if daemon.poll() is not None:
            print((work / "daemon.log").read_text()[-3000:])
            return 1
        shim.unprepare_pod("default", "demo-pod")
        say("unprepared: the MIG instance is destroyed and the CDI spec removed")
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    p.kill()
        if shim:
            shim.stop()
        if cp:
            cp.stop()
        if not os.environ.get("DRA_DEMO_KEEP"):
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
