#!/usr/bin/env python3
"""NodePrepareResources latency and throughput of the framework with a no-op backend.

Measures, through the real kubelet-facing unix socket (PluginServer + a persistent grpc.aio
channel, as the kubelet keeps one connection per plugin) and, for comparison, by calling the
PrepareEngine directly:

* ``single``: one claim per call, calls one after another;
* ``batch32``: 32 claims per call (per-claim latency = call latency, throughput in claims/s);
* ``concurrent100``: 100 single-claim calls in flight at once.

The ResourceClaim fetch is excluded (an in-memory getter returns resource.k8s.io/v1 dicts); its
framework-side cost (what the default lightkube getter adds on top of the API round trip:
parsing the typed model and converting it back to a dict) is measured separately. Every
prepare is real: checkpoint PrepareStarted/PrepareCompleted with fsync, CDI spec written with
fsync. Each prepared claim is unprepared afterwards (unprepare latency reported too).

usage: .venv/bin/python benchmarks/prepare_latency.py [--rounds N] [--dir DIR] [--json]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dra_framework import hookimpl  # noqa: E402
from dra_framework.backend import BackendContext  # noqa: E402
from dra_framework.cdi.writer import CdiWriter  # noqa: E402
from dra_framework.composition import BackendInstance, discover  # noqa: E402
from dra_framework.engine import Checkpoint, PrepareEngine, checkpoint_path  # noqa: E402
from dra_framework.kubelet.types import ClaimRef  # noqa: E402
from dra_framework.model import Device, PrepareResult  # noqa: E402
from dra_framework.plugins import BackendHooks  # noqa: E402

DRIVER = "bench.example.com"
NODE = "bench-node"
N_DEVICES = 4096


class NoopBackend:
    @hookimpl
    def dra_discover(self, inventory):
        for i in range(N_DEVICES):
            inventory.add_device(Device(f"dev-{i}"))

    @hookimpl
    def dra_prepare(self, ctx, devices):
        return PrepareResult()

    @hookimpl
    def dra_unprepare(self, stored):
        return None


def claim(i: int) -> dict:
    uid = str(uuid.uuid4())
    return {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
            "metadata": {"name": f"c{i}", "namespace": "bench", "uid": uid, "resourceVersion": "1",
                         "creationTimestamp": "2025-01-01T00:00:00Z"},
            "spec": {"devices": {"requests": [{"name": "gpu", "exactly": {"deviceClassName": "bench",
                                                                           "allocationMode": "ExactCount",
                                                                           "count": 1}}]}},
            "status": {"allocation": {"devices": {"results": [
                {"request": "gpu", "driver": DRIVER, "pool": NODE, "device": f"dev-{i % N_DEVICES}"}]},
                "nodeSelector": {"nodeSelectorTerms": [{"matchFields": [
                    {"key": "metadata.name", "operator": "In", "values": [NODE]}]}]}},
                "reservedFor": [{"resource": "pods", "name": f"p{i}", "uid": str(uuid.uuid4())}]}}


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, int(round(p / 100 * len(xs))) - 1))]


def summary(name: str, lat: list[float], claims: int, wall: float) -> dict:
    return {"scenario": name, "samples": len(lat), "p50_ms": round(pct(lat, 50) * 1e3, 3),
            "p99_ms": round(pct(lat, 99) * 1e3, 3), "mean_ms": round(statistics.mean(lat) * 1e3, 3),
            "claims_per_s": round(claims / wall, 1)}


class Bench:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.claims: dict[tuple[str, str], dict] = {}
        self.counter = 0

    async def setup(self) -> None:
        ctx = BackendContext(driver_name=DRIVER, node_name=NODE, host_root=self.root, state_dir=self.root / "state",
                             cdi_root=self.root / "cdi", backend_name="noop")
        backends = [BackendInstance("noop", "noop", BackendHooks(f"{DRIVER}/noop", NoopBackend()), ctx)]
        inventory = await discover(backends)
        cp = Checkpoint(checkpoint_path(self.root / "kubelet", DRIVER), boot_id="bench-boot")

        async def get_claim(ns, name):
            return self.claims.get((ns, name))
        self.engine = PrepareEngine(DRIVER, backends=backends, inventory=inventory, checkpoint=cp,
                                    cdi=CdiWriter(str(self.root / "cdi"), vendor="k8s.bench.example.com",
                                                  class_="claim"),
                                    node_name=NODE, get_claim=get_claim)
        await self.engine.start()

    def new_claims(self, n: int) -> list[ClaimRef]:
        refs = []
        for _ in range(n):
            self.counter += 1
            c = claim(self.counter)
            md = c["metadata"]
            self.claims[(md["namespace"], md["name"])] = c
            refs.append(ClaimRef(md["uid"], md["namespace"], md["name"]))
        return refs

    async def run(self, prepare, unprepare, rounds: int, label: str) -> list[dict]:
        out = []
        # warm-up
        for _ in range(20):
            refs = self.new_claims(1)
            await prepare(refs)
            await unprepare(refs)

        lat, ulat = [], []
        t0 = time.perf_counter()
        for _ in range(rounds * 10):
            refs = self.new_claims(1)
            s = time.perf_counter()
            res = await prepare(refs)
            lat.append(time.perf_counter() - s)
            assert all(not r.error for r in res.values()), res
            s = time.perf_counter()
            await unprepare(refs)
            ulat.append(time.perf_counter() - s)
        wall = time.perf_counter() - t0
        out.append(summary(f"{label} single (prepare)", lat, len(lat), sum(lat)))
        out.append(summary(f"{label} single (unprepare)", ulat, len(ulat), sum(ulat)))

        lat = []
        wall = 0.0
        for _ in range(rounds):
            refs = self.new_claims(32)
            s = time.perf_counter()
            res = await prepare(refs)
            d = time.perf_counter() - s
            wall += d
            lat.append(d)
            assert len(res) == 32 and all(not r.error for r in res.values())
            await unprepare(refs)
        out.append(summary(f"{label} batch32 (per call = per claim)", lat, 32 * len(lat), wall))

        lat = []
        wall = 0.0
        for _ in range(rounds):
            refs = self.new_claims(100)

            async def one(r):
                s = time.perf_counter()
                res = await prepare([r])
                lat.append(time.perf_counter() - s)
                assert not res[r.uid].error, res
            s = time.perf_counter()
            await asyncio.gather(*(one(r) for r in refs))
            wall += time.perf_counter() - s
            await asyncio.gather(*(unprepare([r]) for r in refs))
        out.append(summary(f"{label} concurrent100", lat, len(lat), wall))
        return out


def fetch_overhead(n: int = 500) -> dict:
    """What the default lightkube getter adds per claim besides the network: typed parse + to_dict."""
    from lightkube.resources.resource_v1 import ResourceClaim
    c = claim(1)
    lat = []
    for _ in range(n):
        s = time.perf_counter()
        ResourceClaim.from_dict(json.loads(json.dumps(c))).to_dict()
        lat.append(time.perf_counter() - s)
    return summary("claim fetch: lightkube parse + to_dict (network excluded)", lat, n, sum(lat))


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--dir", default=None, help="state directory (default: a temp dir)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    base = Path(args.dir or tempfile.mkdtemp(prefix="dra-bench-"))
    results: list[dict] = []

    b = Bench(base / "direct")
    await b.setup()
    results += await b.run(b.engine.prepare, b.engine.unprepare, args.rounds, "engine")

    mode = "grpc"
    try:
        import grpc

        from dra_framework.kubelet._proto import dra_v1_pb2 as pb
        from dra_framework.kubelet._proto import dra_v1_pb2_grpc
        from dra_framework.kubelet.server import PluginServer
    except ImportError as exc:  # kubelet layer not available: engine numbers only
        mode = f"engine only ({exc})"
    if mode == "grpc":
        g = Bench(base / "grpc")
        await g.setup()
        (g.root / "kubelet" / "plugins_registry").mkdir(parents=True, exist_ok=True)
        server = PluginServer(DRIVER, g.engine, kubelet_root=str(g.root / "kubelet"))
        await server.start()
        channel = grpc.aio.insecure_channel(f"unix:{server.paths.dra}")
        stub = dra_v1_pb2_grpc.DRAPluginStub(channel)

        def pbc(refs):
            return [pb.Claim(uid=r.uid, namespace=r.namespace, name=r.name) for r in refs]

        async def prepare(refs):
            resp = await stub.NodePrepareResources(pb.NodePrepareResourcesRequest(claims=pbc(refs)), timeout=45)
            return dict(resp.claims)

        async def unprepare(refs):
            resp = await stub.NodeUnprepareResources(pb.NodeUnprepareResourcesRequest(claims=pbc(refs)), timeout=45)
            return dict(resp.claims)
        try:
            results += await g.run(prepare, unprepare, args.rounds, "grpc")
        finally:
            await channel.close()
            await server.stop()
    results.append(fetch_overhead())

    fs = os.popen(f"df -T {base} | tail -1").read().split()
    meta = {"cpus": os.cpu_count(), "python": sys.version.split()[0], "dir": str(base),
            "filesystem": fs[1] if len(fs) > 1 else "?", "transport": mode}
    if args.json:
        print(json.dumps({"meta": meta, "results": results}, indent=2))
        return
    print(f"# {meta}")
    print(f"{'scenario':58} {'n':>5} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8} {'claims/s':>9}")
    for r in results:
        print(f"{r['scenario']:58} {r['samples']:>5} {r['p50_ms']:>8} {r['p99_ms']:>8} {r['mean_ms']:>8} "
              f"{r['claims_per_s']:>9}")


if __name__ == "__main__":
    asyncio.run(main())
