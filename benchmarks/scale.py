#!/usr/bin/env python3
"""How the cost of a prepare grows with the work (benchmarks/README.md, "Scale").

* ``checkpoint``: prepare + unprepare of one claim while 1, 100, 1,000 other claims are prepared
  on the node (the checkpoint file grows with them);
* ``devices``: one claim with 1, 8, 64 devices;
* ``dgx``: ``dra-framework run`` with the NVIDIA backend on the sample DGX H100 host (fake NVML,
  every MIG placement as a partitionable device) against a real kube-apiserver: process start
  until the API server lists every device, and the daemon's RSS then.

``checkpoint`` and ``devices`` drive the engine in process (real checkpoint with fsync, real CDI
specs, no gRPC and no API GET: the claim comes from memory) to isolate the cost of the work.

    .venv/bin/python benchmarks/scale.py checkpoint devices [--dir /dev/shm] [--reps 100]
    .venv/bin/python benchmarks/scale.py dgx
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from prepare_latency import DRIVER, NODE, N_DEVICES, NoopBackend  # noqa: E402

from dra_framework.backend import BackendContext  # noqa: E402
from dra_framework.cdi.writer import CdiWriter  # noqa: E402
from dra_framework.composition import BackendInstance, discover  # noqa: E402
from dra_framework.engine import Checkpoint, PrepareEngine, checkpoint_path  # noqa: E402
from dra_framework.kubelet.types import ClaimRef  # noqa: E402
from dra_framework.plugins import BackendHooks  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, int(round(p / 100 * len(xs))) - 1))]


def claim(devices: list[int]) -> dict:
    uid = str(uuid.uuid4())
    return {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
            "metadata": {"name": f"c-{uid[:8]}", "namespace": "bench", "uid": uid},
            "spec": {"devices": {"requests": [{"name": "gpu", "exactly": {"deviceClassName": "bench"}}]}},
            "status": {"allocation": {"devices": {"results": [
                {"request": "gpu", "driver": DRIVER, "pool": NODE, "device": f"dev-{i}"} for i in devices]}}}}


class Engine:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.claims: dict[tuple[str, str], dict] = {}

    async def start(self) -> None:
        ctx = BackendContext(driver_name=DRIVER, node_name=NODE, host_root=self.root, state_dir=self.root / "state",
                             cdi_root=self.root / "cdi", backend_name="noop")
        backends = [BackendInstance("noop", "noop", BackendHooks(f"{DRIVER}/noop", NoopBackend()), ctx)]
        inventory = await discover(backends)
        self.checkpoint = Checkpoint(checkpoint_path(self.root / "kubelet", DRIVER), boot_id="bench-boot")

        async def get_claim(ns: str, name: str) -> dict | None:
            return self.claims.get((ns, name))
        self.engine = PrepareEngine(DRIVER, backends=backends, inventory=inventory, checkpoint=self.checkpoint,
                                    cdi=CdiWriter(str(self.root / "cdi"), vendor="k8s.bench.example.com",
                                                  class_="claim"), node_name=NODE, get_claim=get_claim)
        await self.engine.start()

    def ref(self, devices: list[int]) -> ClaimRef:
        c = claim(devices)
        md = c["metadata"]
        self.claims[(md["namespace"], md["name"])] = c
        return ClaimRef(md["uid"], md["namespace"], md["name"])

    async def cycle(self, devices: list[int], reps: int) -> dict:
        prep, unprep = [], []
        for _ in range(reps):
            r = self.ref(devices)
            t0 = time.perf_counter()
            res = await self.engine.prepare([r])
            t1 = time.perf_counter()
            assert not res[r.uid].error, res[r.uid].error
            assert not (await self.engine.unprepare([r]))[r.uid]
            prep.append(t1 - t0)
            unprep.append(time.perf_counter() - t1)
        return {"prepare_p50_ms": round(pct(prep, 50) * 1e3, 2), "prepare_p99_ms": round(pct(prep, 99) * 1e3, 2),
                "unprepare_p50_ms": round(pct(unprep, 50) * 1e3, 2)}


async def checkpoint_growth(base: Path, sizes: list[int], reps: int) -> list[dict]:
    out = []
    for n in sizes:
        e = Engine(Path(tempfile.mkdtemp(prefix=f"ckpt-{n}-", dir=base)))
        await e.start()
        held = [e.ref([N_DEVICES - 1 - i]) for i in range(n)]
        for i in range(0, n, 64):
            res = await e.engine.prepare(held[i:i + 64])
            assert all(not r.error for r in res.values())
        row = {"prepared_claims": n, **await e.cycle([0], reps),
               "checkpoint_kib": round(os.path.getsize(e.checkpoint.path) / 1024, 1)}
        print(json.dumps(row), flush=True)
        out.append(row)
    return out


async def devices_per_claim(base: Path, sizes: list[int], reps: int) -> list[dict]:
    out = []
    e = Engine(Path(tempfile.mkdtemp(prefix="devs-", dir=base)))
    await e.start()
    for k in sizes:
        row = {"devices_per_claim": k, **await e.cycle(list(range(k)), reps)}
        print(json.dumps(row), flush=True)
        out.append(row)
    return out


def dgx() -> dict:
    """Start → every device published, RSS then; plus ``discover`` alone."""
    from lightkube.resources.resource_v1 import ResourceSlice

    from dra_framework.testing import k8s
    from vs_go_sides import ensure_node

    cfg_file = REPO / "examples/configs/nvidia-dgx-h100.yaml"
    exe = str(Path(sys.executable).parent / "dra-framework")
    t0 = time.perf_counter()
    r = subprocess.run(["/usr/bin/time", "-f", "%e %M", exe, "discover", "-c", str(cfg_file), "-o", "json"],
                       capture_output=True, text=True, cwd=REPO, check=True)
    discover_s = time.perf_counter() - t0
    wall, maxrss_kib = r.stderr.strip().splitlines()[-1].split()
    data = json.loads(r.stdout)
    items = data["items"] if isinstance(data, dict) else data
    n_devices = sum(len(s["spec"].get("devices") or []) for s in items)
    work = Path(tempfile.mkdtemp(prefix="dgx-"))
    cp = k8s.ControlPlane(k8s.find_bins(k8s.k8s_version()), work / "cp", k8s.k8s_version()).start()
    try:
        client = cp.client()
        ensure_node(client, "dgx-node")
        import yaml

        cfg = yaml.safe_load(cfg_file.read_text())
        cfg["drivers"][0]["backends"][0]["options"]["hostRoot"] = str(REPO / "examples/hosts/dgx-h100")
        (work / "kubelet" / "plugins_registry").mkdir(parents=True)
        cfg.update(nodeName="dgx-node", kubeletRootDir=str(work / "kubelet"), cdiRoot=str(work / "cdi"),
                   stateDir=str(work / "state"), kubeconfig=str(cp.kubeconfig), metricsPort=0, healthzPort=0)
        (work / "dgx.yaml").write_text(yaml.safe_dump(cfg))
        t0, wall0 = time.perf_counter(), time.time()
        proc = subprocess.Popen([exe, "run", "--config", str(work / "dgx.yaml")], cwd=REPO,
                                stdout=open(work / "daemon.log", "wb"), stderr=subprocess.STDOUT)
        try:
            while True:
                got = sum(len(s.spec.devices or []) for s in client.list(ResourceSlice, fields={"spec.driver": "gpu.nvidia.com"}))
                if n_devices and got >= n_devices:
                    break
                if time.perf_counter() - t0 > 300 or proc.poll() is not None:
                    raise RuntimeError(f"{got} of {n_devices} devices published; see {work / 'daemon.log'}")
                time.sleep(0.05)
            publish_s = time.perf_counter() - t0
            rss = int(Path(f"/proc/{proc.pid}/status").read_text().split("VmRSS:")[1].split()[0]) / 1024
            time.sleep(10)
            rss_later = int(Path(f"/proc/{proc.pid}/status").read_text().split("VmRSS:")[1].split()[0]) / 1024
        finally:
            proc.terminate()
            proc.wait(30)
    finally:
        cp.stop()
    import datetime

    def at(marker: str) -> float | None:  # seconds after exec of the daemon's first log line with marker
        for line in (work / "daemon.log").read_text().splitlines():
            if marker in line:
                stamp = datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
                return round(stamp - wall0, 2)
        return None
    row = {"devices": n_devices, "exec_to_discovered_s": at("device(s) in"), "exec_to_serving_s": at("serving on"),
           "exec_to_publishing_s": at("publishing ResourceSlices"), "discover_cli_s": round(discover_s, 2),
           "discover_cli_maxrss_mib": round(int(maxrss_kib) / 1024),
           "start_to_all_published_s": round(publish_s, 2), "daemon_rss_mib_then": round(rss), "daemon_rss_mib_10s_later": round(rss_later)}
    print(json.dumps(row), flush=True)
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("parts", nargs="+", choices=("checkpoint", "devices", "dgx"))
    ap.add_argument("--dir", default="/dev/shm", help="where state, checkpoint and CDI dirs go")
    ap.add_argument("--reps", type=int, default=100)
    ap.add_argument("--claims", default="1,100,1000")
    ap.add_argument("--devices", default="1,8,64")
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="scale-", dir=args.dir))
    print(f"# load {Path('/proc/loadavg').read_text().split()[:3]}, dir {base}", flush=True)
    if "checkpoint" in args.parts:
        asyncio.run(checkpoint_growth(base, [int(x) for x in args.claims.split(",")], args.reps))
    if "devices" in args.parts:
        asyncio.run(devices_per_claim(base, [int(x) for x in args.devices.split(",")], args.reps))
    if "dgx" in args.parts:
        dgx()
    print(f"# load {Path('/proc/loadavg').read_text().split()[:3]}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
