"""The two drivers of benchmarks/vs_go.py as processes, and the API objects they need.

* :class:`PySide`: ``dra-framework run`` with the example backend (``count`` accelerators, each
  with two halves), API client limit 1,000 QPS like the Go side;
* :class:`GoSide`: ``go-dra-driver`` (benchmarks/go-driver) publishing the slices the Python
  side published (same devices and counters, its own driver name and Node).

Each side has its own Node, driver name ``<node>.bench.example.com``, kubelet root dir
(``plugins_registry`` + ``plugins``), CDI dir and state dir under ``root``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

NAMESPACE = "bench"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().split(" ", 3)[:3].__str__()


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, int(round(p / 100 * len(xs))) - 1))]


def setup_objects(client: Any) -> None:
    from lightkube.resources.core_v1 import Namespace

    client.create(Namespace.from_dict({"metadata": {"name": NAMESPACE}}))


def ensure_node(client: Any, name: str) -> str:
    from lightkube import ApiError
    from lightkube.resources.core_v1 import Node

    try:
        return client.create(Node.from_dict({"metadata": {"name": name}})).metadata.uid
    except ApiError as exc:
        if exc.status.code != 409:
            raise
        return client.get(Node, name).metadata.uid


class BenchSide:
    name = ""

    def __init__(self, root: Path, cp: Any, node: str) -> None:
        self.root, self.cp, self.node = root, cp, node
        self.driver = f"{node}.bench.example.com"
        self.kubelet = root / "kubelet"
        self.cdi = root / "cdi"
        (self.kubelet / "plugins_registry").mkdir(parents=True, exist_ok=True)
        self.cdi.mkdir(parents=True, exist_ok=True)
        self.reg_socket = self.kubelet / "plugins_registry" / f"{self.driver}-reg.sock"
        self.dra_socket = self.kubelet / "plugins" / self.driver / "dra.sock"
        self.claims_file = root / "claims.json"
        self.claims: list[dict[str, str]] = []
        self.proc: subprocess.Popen[bytes] | None = None
        self.cycles = 0
        self.expected_devices = 0

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> None:
        ensure_node(self.cp.client(), self.node)
        log = open(self.root / "driver.log", "wb")
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while not self.dra_socket.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} driver did not start: {(self.root / 'driver.log').read_text()[-3000:]}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def cpu_seconds(self) -> float:
        """utime + stime of the driver process, all threads."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def wait_slices(self, client: Any, timeout: float = 120) -> list[dict[str, Any]]:
        """Wait until this driver's slices list ``expected_devices`` devices; returns the slice
        specs (``devices``/``sharedCounters``) in name order."""
        from lightkube.resources.resource_v1 import ResourceSlice

        deadline = time.monotonic() + timeout
        while True:
            items = sorted((s.to_dict() for s in client.list(ResourceSlice, fields={"spec.driver": self.driver})),
                           key=lambda s: s["metadata"]["name"])
            n = sum(len(s["spec"].get("devices") or []) for s in items)
            if n == self.expected_devices:
                break
            if time.monotonic() > deadline or (self.proc is not None and self.proc.poll() is not None):
                raise RuntimeError(f"{self.name}: {n} of {self.expected_devices} devices published")
            time.sleep(0.1)
        self.pools = {d["name"]: s["spec"]["pool"]["name"] for s in items for d in s["spec"].get("devices") or []}
        out = []
        for s in items:
            spec = {k: s["spec"][k] for k in ("devices", "sharedCounters") if s["spec"].get(k)}
            out.append(spec)
        return out


class PySide(BenchSide):
    name = "python"

    def __init__(self, root: Path, cp: Any, node: str, count: int) -> None:
        super().__init__(root, cp, node)
        self.expected_devices = 3 * count
        cfg = {"nodeName": node, "kubeletRootDir": str(self.kubelet), "cdiRoot": str(self.cdi),
               "stateDir": str(root / "state"), "kubeconfig": str(cp.kubeconfig), "metricsPort": 0,
               "healthzPort": 0, "apiQPS": 1000, "apiBurst": 1000,
               "drivers": [{"name": self.driver, "backends": [{"name": "example", "options": {"count": count}}]}]}
        self.config = root / "config.yaml"
        self.config.write_text(yaml.safe_dump(cfg))

    def command(self) -> list[str]:
        return [str(Path(sys.executable).parent / "dra-framework"), "run", "--config", str(self.config)]


class GoSide(BenchSide):
    name = "go"

    def __init__(self, root: Path, cp: Any, node: str, bins: Path, slices: list[dict[str, Any]] | None) -> None:
        super().__init__(root, cp, node)
        self.bins = bins
        self.slices_file = root / "slices.json"
        if slices:
            self.slices_file.write_text(json.dumps(slices))
            self.expected_devices = sum(len(s.get("devices") or []) for s in slices)

    def command(self) -> list[str]:
        cmd = [str(self.bins / "go-dra-driver"), "-kubeconfig", str(self.cp.kubeconfig), "-node-name", self.node,
               "-driver-name", self.driver, "-kubelet-root", str(self.kubelet), "-cdi-root", str(self.cdi)]
        return cmd + (["-slices", str(self.slices_file)] if self.slices_file.exists() else [])


def claims_for(client: Any, side: BenchSide, n: int) -> None:
    """``n`` claims of one accelerator each (``acc-0`` ...), allocated for ``side``'s node by
    writing ``status.allocation`` as the scheduler would; written to ``side.claims_file``."""
    from lightkube.resources.resource_v1 import ResourceClaim, ResourceClaimStatus
    from lightkube.types import PatchType

    side.claims = []
    for i in range(n):
        name = f"{side.node}-c{i}"
        obj = client.create(ResourceClaim.from_dict({
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"devices": {"requests": [{"name": "acc", "exactly": {"deviceClassName": "bench"}}]}}}))
        dev = f"acc-{i}"
        alloc = {"devices": {"results": [{"request": "acc", "driver": side.driver, "pool": side.pools[dev],
                                          "device": dev}]},
                 "nodeSelector": {"nodeSelectorTerms": [{"matchFields": [
                     {"key": "metadata.name", "operator": "In", "values": [side.node]}]}]}}
        client.patch(ResourceClaimStatus, name, {"status": {"allocation": alloc}}, namespace=NAMESPACE,
                     patch_type=PatchType.MERGE)
        side.claims.append({"uid": obj.metadata.uid, "namespace": NAMESPACE, "name": name})
    side.claims_file.write_text(json.dumps(side.claims))


def example_pool(n_devices: int) -> Any:
    """The example backend's inventory shape with ``n_devices`` devices (accelerators + halves)."""
    from dra_framework.model import Capacity, CounterConsumption, CounterSet, Device, Pool, Version

    mem = 16 << 30
    devices, sets = [], []
    for i in range(n_devices // 3):
        attrs = {"model": "sim-x1", "index": i, "firmware": Version("1.2.0")}
        sets.append(CounterSet(f"acc-{i}-counters", {"memory": mem, "halves": 2}))
        devices.append(Device(f"acc-{i}", attributes={**attrs, "partition": False}, capacity={"memory": Capacity(mem)},
                              consumes_counters=[CounterConsumption(f"acc-{i}-counters", {"memory": mem, "halves": 2})]))
        for h in range(2):
            devices.append(Device(f"acc-{i}-half-{h}", attributes={**attrs, "partition": True},
                                  capacity={"memory": Capacity(mem // 2)},
                                  consumes_counters=[CounterConsumption(f"acc-{i}-counters",
                                                                        {"memory": mem // 2, "halves": 1})]))
    return Pool(devices=devices, counter_sets=sets)


async def publish_python(cp: Any, node: str, n_devices: int, rnd: int) -> tuple[float, list[dict[str, Any]]]:
    """Seconds from ``update()`` of a running SliceController (debounce 0, slices listed) until
    the API server lists all ``n_devices`` devices of the pool (polled every 2 ms); plus the published slice specs (for the Go side)."""
    from lightkube import AsyncClient, KubeConfig

    from dra_framework.slices import SliceController

    uid = ensure_node(cp.client(), node)
    client = AsyncClient(KubeConfig.from_file(str(cp.kubeconfig)))
    driver = f"r{rnd}-{time.time_ns() % 1000000}.{node}.bench.example.com"
    ctl = SliceController(client, driver, node, uid, debounce_seconds=0.0)
    await ctl.start()
    import asyncio

    await asyncio.sleep(0.5)
    pool = example_pool(n_devices)
    poller = AsyncClient(KubeConfig.from_file(str(cp.kubeconfig)))
    from lightkube.resources.resource_v1 import ResourceSlice

    async def published() -> int:
        return sum([len(s.spec.devices or []) async for s in poller.list(ResourceSlice, fields={"spec.driver": driver})])
    await published()  # the poller's connection is up before the clock starts, as on the Go side
    t0 = time.perf_counter()
    ctl.update({None: pool})
    # Polled like the Go side does (every 2 ms), not the controller's own wait_synced().
    while await published() != len(pool.devices):
        if time.perf_counter() - t0 > 60:
            raise RuntimeError(f"{driver}: pool not published within 60 s")
        await asyncio.sleep(0.002)
    seconds = time.perf_counter() - t0
    side = BenchSide.__new__(BenchSide)
    side.driver, side.expected_devices, side.proc = driver, len(pool.devices), None
    specs = side.wait_slices(cp.client(), timeout=10)
    await ctl.stop(delete=True)
    return seconds, specs
