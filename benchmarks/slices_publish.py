"""Benchmark: N simulated nodes, each with a DGX-H100-sized partitionable pool, publishing to one
real kube-apiserver (started like the ``kube_apiserver`` test fixture).

Pool per node: 8 H100 80GB GPUs, each as a full GPU plus every MIG placement from the H100 table
(ref-drivers-gpu.md §6.3: 25 MIG devices per GPU), all consuming the GPU's counter set
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
import signal
import sys
import tempfile
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


async def main(args) -> int:
    import httpx2
    from lightkube import AsyncClient, KubeConfig

    from dra_framework.slices.kubeapi import KubeAPI
    from dra_framework.testing import k8s

    bins = k8s.find_bins(k8s.k8s_version())
    work = Path(tempfile.mkdtemp(prefix="slices-bench-"))
    cp = k8s.ControlPlane(bins, work, k8s.k8s_version())
    t0 = time.monotonic()
    cp.start()
    print(f"apiserver {k8s.k8s_version()} up in {time.monotonic() - t0:.1f}s ({cp.url})", flush=True)
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
                 for c, n in zip(clients, names)]
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
              f"{published} devices, writes {total}", flush=True)
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
              f"{steady} writes", flush=True)

        # One health taint per node: one slice update per node, generation kept.
        before = sum(sum(c.stats.values()) for c in ctrls)
        t0 = time.monotonic()
        for c in ctrls:
            p = dgx_h100_pool(c.node_name)
            d = p.devices[0]
            p.devices[0] = Device(d.name, d.attributes, d.capacity, d.consumes_counters,
                                  taints=[Taint("gpu.nvidia.com/xid", "79", "NoExecute")])
            c.update(p)
        await asyncio.gather(*(c.wait_synced(args.timeout) for c in ctrls))
        taint_writes = sum(sum(c.stats.values()) for c in ctrls) - before
        print(f"one health taint per node: {taint_writes} writes in {time.monotonic() - t0:.1f}s", flush=True)

        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        server_rss = {p.name: int(Path(f"/proc/{p.popen.pid}/status").read_text().split("VmRSS:")[1].split()[0]) // 1024
                      for p in cp.procs if hasattr(p, "popen")}
        print(f"server RSS MiB: {server_rss}")
        print(f"RESULT nodes={args.nodes} devices_per_node={n_dev} slices={len(items)} converge_s={t_conv:.1f} "
              f"writes={sum(total.values())} creates={total['creates']} updates={total['updates']} "
              f"deletes={total['deletes']} steady_writes={steady} taint_writes={taint_writes} python_maxrss_mib={rss:.0f}")
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
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally: stop the control plane
    sys.exit(asyncio.run(main(args)))
