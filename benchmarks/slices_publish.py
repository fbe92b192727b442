"""Benchmark: N simulated nodes, each with a DGX-H100-sized partitionable pool, publishing to one
real kube-apiserver (started like the ``kube_apiserver`` test fixture).

Pool per node: 8 H100 80GB GPUs, each as a full GPU plus every MIG placement from the H100 table
(25 MIG devices per GPU, https://docs.nvidia.com/datacenter/tesla/mig-user-guide/), all consuming the GPU's counter set
(7 engine/memory counters + 8 memory slices) -> 208 devices and 8 counter sets, i.e. 1 counter
slice + 4 device slices of ≤64 devices per node.

Measures: time to converge (all controllers synced), total writes, the steady-state writes over a
quiet period that includes a periodic relist and a re-sent identical inventory (must be 0), and
the writes for one device's health taint on every node.

    .venv/bin/python benchmarks/slices_publish.py --nodes 1000
    .venv/bin/python benchmarks/slices_publish.py --nodes 50 --quiet-seconds 10
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import resource
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

from dra_framework.model import Capacity, CounterConsumption, CounterSet, Device, Pool, Taint, Version
from dra_framework.slices import SliceController

DRIVER = "gpu.nvidia.com"
GiB = 1024**3
MiB = 1024**2

# H100 80GB MIG profiles: name, real id, SMs, CE, NVDEC, JPEG, OFA, memory MiB, placements (start, size).
H100_MIG = [
    ("1g.10gb", 19, 16, 1, 1, 1, 0, 10240, [(i, 1) for i in range(7)]),
    ("1g.10gb+me", 20, 16, 1, 1, 1, 1, 10240, [(i, 1) for i in range(7)]),
    ("1g.20gb", 15, 16, 1, 1, 1, 0, 20480, [(0, 2), (2, 2), (4, 2), (6, 2)]),
    ("2g.20gb", 14, 32, 2, 2, 2, 0, 20480, [(0, 2), (2, 2), (4, 2)]),
    ("3g.40gb", 9, 48, 3, 3, 3, 0, 40960, [(0, 4), (4, 4)]),
    ("4g.40gb", 5, 64, 4, 4, 4, 0, 40960, [(0, 4)]),
    ("7g.80gb", 0, 112, 8, 7, 7, 1, 81920, [(0, 8)]),
]
MEMORY_SLICES = 8


def dgx_h100_pool(node: str) -> Pool:
    devices: list[Device] = []
    sets: list[CounterSet] = []
    for g in range(8):
        uuid = f"GPU-{abs(hash((node, g))) % 16**8:08x}-0000-0000-0000-{g:012x}"
        cs = f"gpu-{g}-counter-set"
        full = {"multiprocessors": 132, "copy-engines": 8, "decoders": 7, "jpeg-engines": 7, "ofa-engines": 1,
                "memory": 80 * GiB, **{f"memory-slice-{i}": 1 for i in range(MEMORY_SLICES)}}
        sets.append(CounterSet(cs, full))
        common = {"productName": "NVIDIA H100 80GB HBM3", "brand": "Nvidia", "architecture": "Hopper",
                  "cudaComputeCapability": Version("9.0"), "driverVersion": Version("550.54.15"),
                  "cudaDriverVersion": Version("12.4"), "resource.kubernetes.io/pciBusID": f"0000:{0x18 + g:02x}:00.0",
                  "resource.kubernetes.io/pcieRoot": f"pci0000:{g:02x}", "resource.kubernetes.io/numaNode": g // 4}
        devices.append(Device(f"gpu-{g}", attributes={"type": "gpu", "uuid": uuid, **common},
                              capacity={"memory": Capacity(80 * GiB)},
                              consumes_counters=[CounterConsumption(cs, full)]))
        for name, pid, sm, ce, dec, jpg, ofa, mem, placements in H100_MIG:
            for start, size in placements:
                use = {"multiprocessors": sm, "copy-engines": ce, "decoders": dec, "jpeg-engines": jpg,
                       "ofa-engines": ofa, "memory": mem * MiB,
                       **{f"memory-slice-{i}": 1 for i in range(start, start + size)}}
                use = {k: v for k, v in use.items() if v}
                dev_name = f"gpu-{g}-mig-{name.replace('.', '').replace('+', '-')}-{pid}-{start}"
                devices.append(Device(dev_name, attributes={"type": "mig", "profile": name, "parentUUID": uuid, **common},
                                      capacity={"multiprocessors": sm, "copyEngines": ce, "decoders": dec,
                                                "jpegEngines": jpg, "ofaEngines": ofa, "memory": mem * MiB},
                                      consumes_counters=[CounterConsumption(cs, use)]))
    return Pool(devices=devices, counter_sets=sets)


def _rss_mib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return 0


class MemoryGuard(threading.Thread):
    """Samples the RSS of this process, etcd and kube-apiserver every ``interval`` seconds and
    keeps the peaks. If their sum exceeds ``limit_mib`` (or the machine's MemAvailable drops
    under ``floor_mib``) it kills etcd and the apiserver (our own children, by PID) and exits,
    so a too-large run fails instead of pushing the machine into the OOM killer."""

    def __init__(self, procs, limit_mib: int, floor_mib: int, interval: float = 0.5):
        super().__init__(daemon=True, name="memory-guard")
        self.procs, self.limit_mib, self.floor_mib, self.interval = procs, limit_mib, floor_mib, interval
        self.peak: dict[str, int] = {}
        self.peak_total = 0

    def sample(self) -> dict[str, int]:
        now = {"python": _rss_mib(os.getpid()), **{p.name: _rss_mib(p.popen.pid) for p in self.procs}}
        for k, v in now.items():
            self.peak[k] = max(self.peak.get(k, 0), v)
        self.peak_total = max(self.peak_total, sum(now.values()))
        return now

    def run(self) -> None:
        while True:
            now = self.sample()
            avail = _mem_available_mib()
            if sum(now.values()) > self.limit_mib or avail < self.floor_mib:
                print(f"ABORT: RSS MiB {now} (total {sum(now.values())}, limit {self.limit_mib}), "
                      f"MemAvailable {avail} MiB (floor {self.floor_mib}); killing the control plane", flush=True)
                for p in self.procs:
                    if p.alive:
                        p.popen.kill()
                os._exit(3)
            time.sleep(self.interval)


def _mem_available_mib() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) // 1024
    return 1 << 30


def _kv(items: list[str]) -> dict[str, str]:
    return dict(i.split("=", 1) for i in items)


async def main(args) -> int:
    import httpx2
    from lightkube import AsyncClient, KubeConfig

    from dra_framework.slices.kubeapi import KubeAPI
    from dra_framework.testing import k8s

    bins = k8s.find_bins(k8s.k8s_version())
    work = Path(tempfile.mkdtemp(prefix="slices-bench-"))
    cp = k8s.ControlPlane(bins, work, k8s.k8s_version(), etcd_args=args.etcd_arg, apiserver_args=args.apiserver_arg,
                          etcd_env=_kv(args.etcd_env), apiserver_env=_kv(args.apiserver_env))
    t0 = time.monotonic()
    guard = MemoryGuard(cp.procs, int(args.max_rss_gib * 1024), int(args.min_available_gib * 1024))
    try:
        cp.start()
    finally:
        guard.start()
    print(f"apiserver {k8s.k8s_version()} up in {time.monotonic() - t0:.1f}s ({cp.url}, workdir {work})", flush=True)
    if args.etcd_arg or args.etcd_env or args.apiserver_arg or args.apiserver_env:
        print(f"etcd extra: {args.etcd_arg} {args.etcd_env}; apiserver extra: {args.apiserver_arg} {args.apiserver_env}",
              flush=True)
    config = KubeConfig.from_file(str(cp.kubeconfig))
    admin = AsyncClient(config=config)
    api = KubeAPI(admin)
    try:
        names = [f"node-{i:04d}" for i in range(args.nodes)]
        pools = {n: dgx_h100_pool(n) for n in names}
        n_dev = len(pools[names[0]].devices)
        t0 = time.monotonic()
        sem = asyncio.Semaphore(32)

        async def mknode(n):
            async with sem:
                return await api._request("POST", "api/v1/nodes", body={"apiVersion": "v1", "kind": "Node", "metadata": {"name": n}})

        nodes = await asyncio.gather(*(mknode(n) for n in names))
        uids = {o["metadata"]["name"]: o["metadata"]["uid"] for o in nodes}
        print(f"{args.nodes} nodes created in {time.monotonic() - t0:.1f}s; {n_dev} devices/node", flush=True)

        clients = [AsyncClient(config=config, timeout=httpx2.Timeout(args.client_timeout)) for _ in range(args.nodes)]
        ctrls = [SliceController(c, DRIVER, n, uids[n], resync_seconds=args.resync_seconds, sync_delay=5.0,
                                 debounce_seconds=0.2, max_debounce_seconds=2.0)
                 for c, n in zip(clients, names, strict=True)]
        t0 = time.monotonic()
        for i in range(0, len(ctrls), 50):
            await asyncio.gather(*(c.start() for c in ctrls[i:i + 50]))
        t_start = time.monotonic() - t0
        t0 = time.monotonic()
        for c in ctrls:
            c.update(pools[c.node_name])
        await asyncio.gather(*(c.wait_synced(args.timeout) for c in ctrls))
        t_conv = time.monotonic() - t0
        total = {k: sum(c.stats[k] for c in ctrls) for k in ("creates", "updates", "deletes")}
        items, _ = await api.list_slices({"spec.driver": DRIVER})
        published = sum(len(o["spec"].get("devices") or []) for o in items)
        print(f"controllers started in {t_start:.1f}s; converged in {t_conv:.1f}s: {len(items)} slices, "
              f"{published} devices, writes {total}; RSS MiB now {guard.sample()}, peaks {guard.peak}", flush=True)
        assert published == n_dev * args.nodes, published
        assert all(c.report.ok for c in ctrls), [str(i) for c in ctrls for i in c.report.issues][:5]

        # Steady state: same inventory again, then a quiet period covering a periodic relist.
        before = {k: sum(c.stats[k] for c in ctrls) for k in total}
        for c in ctrls:
            c.update(dgx_h100_pool(c.node_name))
        await asyncio.gather(*(c.wait_synced(args.timeout) for c in ctrls))
        await asyncio.sleep(args.quiet_seconds)
        after = {k: sum(c.stats[k] for c in ctrls) for k in total}
        steady = sum(after.values()) - sum(before.values())
        print(f"steady state over {args.quiet_seconds:.0f}s (re-sent inventory + relist every {args.resync_seconds:.0f}s): "
              f"{steady} writes; RSS MiB now {guard.sample()}", flush=True)

        # One health taint per node: one slice update per node, generation kept.
        before = sum(sum(c.stats.values()) for c in ctrls)
        t0 = time.monotonic()
        for c in ctrls:
            p = dgx_h100_pool(c.node_name)
            d = p.devices[0]
            p.devices[0] = Device(d.name, attributes=d.attributes, capacity=d.capacity,
                                  consumes_counters=d.consumes_counters,
                                  taints=[Taint("gpu.nvidia.com/xid", "79", "NoExecute")])
            c.update(p)
        await asyncio.gather(*(c.wait_synced(args.timeout) for c in ctrls))
        taint_writes = sum(sum(c.stats.values()) for c in ctrls) - before
        print(f"one health taint per node: {taint_writes} writes in {time.monotonic() - t0:.1f}s", flush=True)

        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"RSS MiB now {guard.sample()}; peaks (sampled every {guard.interval}s) {guard.peak}, "
              f"peak total {guard.peak_total}")
        print(f"RESULT nodes={args.nodes} devices_per_node={n_dev} slices={len(items)} converge_s={t_conv:.1f} "
              f"writes={sum(total.values())} creates={total['creates']} updates={total['updates']} "
              f"deletes={total['deletes']} steady_writes={steady} taint_writes={taint_writes} python_maxrss_mib={rss:.0f} "
              f"peak_rss_mib=" + ",".join(f"{k}:{v}" for k, v in guard.peak.items()) + f" peak_total_mib={guard.peak_total}",
              flush=True)
        for c in ctrls:
            await c.stop()
        for c in clients:
            await c.close()
        return 0 if steady == 0 else 1
    finally:
        await admin.close()
        cp.stop()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--quiet-seconds", type=float, default=20.0)
    ap.add_argument("--resync-seconds", type=float, default=15.0)
    ap.add_argument("--timeout", type=float, default=1800.0)
    ap.add_argument("--client-timeout", type=float, default=60.0, help="per-request timeout of each node's client")
    ap.add_argument("--etcd-arg", action="append", default=[], metavar="FLAG",
                    help="extra etcd flag, e.g. --etcd-arg=--quota-backend-bytes=8589934592 (repeatable)")
    ap.add_argument("--apiserver-arg", action="append", default=[], metavar="FLAG",
                    help="extra kube-apiserver flag, e.g. --apiserver-arg=--watch-cache=false (repeatable)")
    ap.add_argument("--etcd-env", action="append", default=[], metavar="K=V", help="e.g. GOMEMLIMIT=2GiB (repeatable)")
    ap.add_argument("--apiserver-env", action="append", default=[], metavar="K=V", help="e.g. GOGC=50 (repeatable)")
    ap.add_argument("--max-rss-gib", type=float, default=18.0,
                    help="abort (kill etcd + apiserver, exit 3) when Python + etcd + apiserver RSS exceed this")
    ap.add_argument("--min-available-gib", type=float, default=2.0,
                    help="abort as above when the machine's MemAvailable drops below this")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally: stop the control plane
    sys.exit(asyncio.run(main(args)))
