#!/usr/bin/env python3
"""A node full of pods starting at once: N concurrent single-claim prepares against a real
kube-apiserver (the Go-built test harness), through the daemon's own rate-limited API client.

Per setting of ``--qps``/``--burst`` (default: the daemon's defaults, then 5/10 for comparison):

* ``fresh``: N claims, each allocated (status written directly), prepared by N concurrent calls
  with the kubelet's 45 s deadline; every prepare GETs its claim through the token bucket;
* ``restart``: a new engine on the same checkpoint (driver restart) and 2×N concurrent
  re-prepares of the same claims (a kubelet restart storm), answered from the checkpoint;
* ``shared``: 50 concurrent prepares of one more claim (pods sharing a claim): one GET.

Prints p50/p99/max per round, the claims that missed the deadline and the API GETs made.
The backend is a no-op; checkpoint and CDI writes are real (fsync'd) in a temporary directory.

usage: .venv/bin/python benchmarks/prepare_storm.py [--claims 200] [--qps Q --burst B]...
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dra_framework import hookimpl  # noqa: E402
from dra_framework.backend import BackendContext  # noqa: E402
from dra_framework.cdi.writer import CdiWriter  # noqa: E402
from dra_framework.composition import BackendInstance, discover  # noqa: E402
from dra_framework.config import Settings  # noqa: E402
from dra_framework.engine import Checkpoint, PrepareEngine, checkpoint_path, lightkube_claim_getter  # noqa: E402
from dra_framework.kube import RateLimitedClient, TokenBucket  # noqa: E402
from dra_framework.kubelet.types import ClaimRef  # noqa: E402
from dra_framework.model import Device, PrepareResult  # noqa: E402
from dra_framework.plugins import BackendHooks  # noqa: E402
from dra_framework.testing import k8s  # noqa: E402

DRIVER = "storm.example.com"
NODE = "storm-node"
DEADLINE = 45.0  # s, the kubelet's per-call timeout


class NoopBackend:
    def __init__(self, n: int) -> None:
        self.n = n

    @hookimpl
    def dra_discover(self, inventory):
        for i in range(self.n):
            inventory.add_device(Device(f"dev-{i}"))

    @hookimpl
    def dra_prepare(self, ctx, devices):
        return PrepareResult()

    @hookimpl
    def dra_unprepare(self, stored):
        return None


def make_claims(cp: k8s.ControlPlane, n: int, ns: str) -> list[ClaimRef]:
    from lightkube import codecs
    from lightkube.resources.core_v1 import Namespace
    from lightkube.resources.resource_v1 import ResourceClaim, ResourceClaimStatus
    from lightkube.models.meta_v1 import ObjectMeta
    from lightkube.types import PatchType

    client = cp.client()
    client.create(Namespace(metadata=ObjectMeta(name=ns)))
    refs = []
    for i in range(n):
        obj = client.create(codecs.from_dict({
            "apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim", "metadata": {"name": f"c{i}", "namespace": ns},
            "spec": {"devices": {"requests": [{"name": "r", "exactly": {"deviceClassName": "storm"}}]}}}))
        client.patch(ResourceClaimStatus, f"c{i}", {"status": {"allocation": {"devices": {"results": [
            {"request": "r", "driver": DRIVER, "pool": NODE, "device": f"dev-{i}"}]}}}},
            namespace=ns, patch_type=PatchType.MERGE)
        refs.append(ClaimRef(uid=obj.metadata.uid, namespace=ns, name=f"c{i}"))
    assert client.get(ResourceClaim, "c0", namespace=ns).status.allocation is not None
    return refs


class CountingClient(RateLimitedClient):
    gets = 0

    async def get(self, *a, **kw):
        CountingClient.gets += 1
        return await self.__getattr__("get")(*a, **kw)


async def make_engine(cp: k8s.ControlPlane, root: Path, n: int, qps: float, burst: int) -> tuple[PrepareEngine, object]:
    from lightkube import AsyncClient, KubeConfig

    ctx = BackendContext(driver_name=DRIVER, node_name=NODE, host_root=root, state_dir=root / "state",
                         cdi_root=root / "cdi", backend_name="noop")
    backends = [BackendInstance("noop", "noop", BackendHooks(f"{DRIVER}/noop", NoopBackend(n)), ctx)]
    api = AsyncClient(KubeConfig.from_file(str(cp.kubeconfig)))
    engine = PrepareEngine(DRIVER, backends=backends, inventory=await discover(backends),
                           checkpoint=Checkpoint(checkpoint_path(root / "kubelet", DRIVER), boot_id="b"),
                           cdi=CdiWriter(str(root / "cdi"), vendor=f"k8s.{DRIVER}", class_="claim"),
                           node_name=NODE,
                           get_claim=lightkube_claim_getter(CountingClient(api, TokenBucket(qps, burst))))
    await engine.start()
    return engine, api


async def storm(engine: PrepareEngine, refs: list[ClaimRef]) -> tuple[list[float], int]:
    async def one(ref: ClaimRef) -> tuple[float, str]:
        t0 = time.monotonic()
        out = await engine.prepare([ref], deadline=t0 + DEADLINE)
        return time.monotonic() - t0, out[ref.uid].error
    res = await asyncio.gather(*(one(r) for r in refs))
    errors = [e for _, e in res if e]
    if errors:
        print(f"    {len(errors)} errors, e.g. {errors[0]}")
    return sorted(t for t, _ in res), len(errors)


def pct(xs: list[float], p: float) -> float:
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


async def run(cp: k8s.ControlPlane, n: int, qps: float, burst: int) -> None:
    refs = make_claims(cp, n + 1, f"storm-{int(qps)}-{burst}-{int(time.time()) % 100000}")
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        print(f"apiQPS {qps:g} / apiBurst {burst}, {n} claims")
        shared = [refs[-1]] * 50  # one claim not prepared yet, shared by 50 pods starting at once
        for name, engine_refs in (("fresh", refs[:-1]), ("restart", refs[:-1] * 2), ("shared", shared)):
            engine, api = await make_engine(cp, root, n + 1, qps, burst)
            CountingClient.gets = 0
            lat, errors = await storm(engine, engine_refs)
            print(f"  {name:8s} {len(engine_refs)} calls: p50 {statistics.median(lat):.2f} s, "
                  f"p99 {pct(lat, 99):.2f} s, max {lat[-1]:.2f} s; errors {errors}; API GETs {CountingClient.gets}")
            await api.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--claims", type=int, default=200)
    ap.add_argument("--qps", type=float, action="append")
    ap.add_argument("--burst", type=int, action="append")
    args = ap.parse_args()
    defaults = Settings.model_validate({})
    settings = list(zip(args.qps or [defaults.api_qps, 5.0], args.burst or [defaults.api_burst, 10], strict=False))
    with tempfile.TemporaryDirectory() as work:
        cp = k8s.ControlPlane(k8s.find_bins(), Path(work), k8s.k8s_version())
        cp.start()
        try:
            for qps, burst in settings:
                asyncio.run(run(cp, args.claims, qps, burst))
        finally:
            cp.stop()


if __name__ == "__main__":
    main()
