"""Helpers for the engine tests (also imported by crash_driver.py in a subprocess).

Real code only: backends are registered through dra_framework.plugins.BackendHooks, the CDI
writer and checkpoint are the real ones; only the API server is replaced by an in-memory claim
getter returning ResourceClaim dicts shaped like resource.k8s.io/v1.
"""
from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any, Callable

from dra_framework import hookimpl
from dra_framework.backend import BackendContext
from dra_framework.cdi.writer import CdiWriter
from dra_framework.composition import BackendInstance, discover
from dra_framework.engine import Checkpoint, PrepareEngine, checkpoint_path
from dra_framework.kubelet.types import ClaimRef
from dra_framework.model import ContainerEdits, Device, PreparedDeviceEdits, PrepareResult
from dra_framework.plugins import BackendHooks

DRIVER = "gpu.example.com"
NODE = "node-1"
VENDOR = "k8s.gpu.example.com"


def new_uid() -> str:
    return str(uuid.uuid4())


def claim_obj(name: str, uid: str, results: list[dict[str, Any]], *, namespace: str = "default",
              configs: list[dict[str, Any]] = (), allocated: bool = True) -> dict[str, Any]:
    """A ResourceClaim as resource.k8s.io/v1 serves it. ``results``: dicts with at least
    ``request`` and ``device``; driver and pool default to DRIVER / NODE."""
    reqs = sorted({r["request"].split("/")[0] for r in results})
    full = [{"driver": DRIVER, "pool": NODE, **r} for r in results]
    obj: dict[str, Any] = {
        "apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
        "metadata": {"name": name, "namespace": namespace, "uid": uid, "resourceVersion": "100",
                     "generation": 1, "creationTimestamp": "2025-01-01T00:00:00Z",
                     "finalizers": ["resource.kubernetes.io/delete-protection"]},
        "spec": {"devices": {
            "requests": [{"name": r, "exactly": {"deviceClassName": "gpu.example.com", "allocationMode": "ExactCount",
                                                 "count": 1}} for r in reqs],
            "config": [{"requests": c.get("requests", []), "opaque": c["opaque"]} for c in configs
                       if c.get("source") == "FromClaim"]}},
        "status": {},
    }
    if allocated:
        obj["status"] = {
            "allocation": {
                "devices": {"results": full, "config": list(configs)},
                "nodeSelector": {"nodeSelectorTerms": [{"matchFields": [
                    {"key": "metadata.name", "operator": "In", "values": [NODE]}]}]},
            },
            "reservedFor": [{"resource": "pods", "name": f"{name}-pod", "uid": new_uid()}],
        }
    return obj


def opaque(params: dict[str, Any], *, source: str = "FromClaim", requests: list[str] = (),
           driver: str = DRIVER) -> dict[str, Any]:
    c: dict[str, Any] = {"source": source, "opaque": {"driver": driver, "parameters": params}}
    if requests:
        c["requests"] = list(requests)
    return c


class FakeBackend:
    """A small backend: devices ``names`` (``shareable`` ones allow multiple allocations),
    recording every hook call in ``calls``; ``before_prepare`` (async, per call) lets a test
    block or fail a prepare."""

    def __init__(self, context: BackendContext, names=("dev-0", "dev-1"), shareable=(), config_types=()):
        self.ctx = context
        self.names, self.shareable, self.types = list(names), set(shareable), list(config_types)
        self.calls: list[tuple[Any, ...]] = []
        self.before_prepare: Callable[[Any, Any], Any] | None = None
        self.fail_unprepare: Exception | None = None
        self.status = None

    @hookimpl
    def dra_discover(self, inventory):
        for n in self.names:
            inventory.add_device(Device(n, attributes={"index": len(n)}, allow_multiple_allocations=n in self.shareable))

    @hookimpl
    def dra_config_types(self):
        return self.types

    @hookimpl
    async def dra_prepare(self, ctx, devices):
        self.calls.append(("prepare", ctx.claim.uid, [d.name for d in devices]))
        if self.before_prepare is not None:
            await self.before_prepare(ctx, devices)
        res = PrepareResult(teardown={"devices": [d.name for d in devices]})
        for d in devices:
            res.devices[d.name] = PreparedDeviceEdits(ContainerEdits(env={"FAKE_DEVICE": d.name}), status=self.status)
        return res

    @hookimpl
    def dra_unprepare(self, stored):
        self.calls.append(("unprepare", stored.claim.uid, stored.completed, dict(stored.journal),
                           dict(stored.teardown), stored.physically_prepared))
        if self.fail_unprepare is not None:
            raise self.fail_unprepare


class Env:
    """A node for one driver: directories, claims in a fake API server, backends, engine."""

    def __init__(self, root: Path, factories: list[tuple[str, Callable[[BackendContext], object]]],
                 *, boot_id: str = "boot-1", policies: dict[str, Any] | None = None) -> None:
        self.root = Path(root)
        self.kubelet_root = self.root / "kubelet"
        self.cdi_root = self.root / "cdi"
        self.state_root = self.root / "state"
        self.host_root = self.root / "host"
        self.factories = factories
        self.policies = policies or {}  # backend key -> CdiPolicy (default: the framework's)
        self.boot_id = boot_id
        self.claims: dict[tuple[str, str], dict[str, Any]] = {}
        self.fetches = 0
        self.problems: list[Any] = []
        self.status_writes: list[tuple[Any, list[dict[str, Any]]]] = []
        self.backends: list[BackendInstance] = []
        self.instances: dict[str, Any] = {}
        self.engine: PrepareEngine | None = None

    @property
    def cp_path(self) -> Path:
        return checkpoint_path(self.kubelet_root, DRIVER)

    def context(self, key: str) -> BackendContext:
        return BackendContext(driver_name=DRIVER, node_name=NODE, host_root=self.host_root,
                              state_dir=self.state_root / key, cdi_root=self.cdi_root, backend_name=key)

    async def get_claim(self, namespace: str, name: str):
        self.fetches += 1
        return self.claims.get((namespace, name))

    async def write_status(self, claim, devices):
        self.status_writes.append((claim, devices))

    def cdi(self) -> CdiWriter:
        return CdiWriter(str(self.cdi_root), vendor=VENDOR, class_="claim")

    async def make_engine(self, *, boot_id: str | None = None, start: bool = True, **kw: Any) -> PrepareEngine:
        if boot_id is not None:
            self.boot_id = boot_id
        self.backends = []
        for key, factory in self.factories:
            ctx = self.context(key)
            inst = factory(ctx)
            self.instances[key] = inst
            inst_ = BackendInstance(key, key, BackendHooks(f"{DRIVER}/{key}", inst), ctx)
            if key in self.policies:
                inst_.cdi_policy = self.policies[key]
            self.backends.append(inst_)
        inventory = await discover(self.backends)
        cp = Checkpoint(self.cp_path, boot_id=self.boot_id, on_problem=self.problems.append)
        self.engine = PrepareEngine(DRIVER, backends=self.backends, inventory=inventory, checkpoint=cp,
                                    cdi=self.cdi(), node_name=NODE, get_claim=self.get_claim,
                                    write_status=self.write_status, **kw)
        if start:
            await self.engine.start()
        return self.engine

    def add_claim(self, name: str, results: list[dict[str, Any]], *, namespace: str = "default",
                  configs: list[dict[str, Any]] = (), uid: str | None = None, allocated: bool = True) -> ClaimRef:
        uid = uid or new_uid()
        self.claims[(namespace, name)] = claim_obj(name, uid, results, namespace=namespace, configs=configs,
                                                   allocated=allocated)
        return ClaimRef(uid=uid, namespace=namespace, name=name)

    def delete_claim(self, ref: ClaimRef) -> None:
        self.claims.pop((ref.namespace, ref.name), None)

    def cdi_files(self) -> list[str]:
        return sorted(p.name for p in self.cdi_root.glob("*.json")) if self.cdi_root.exists() else []


async def wait_for(pred: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not pred():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.01)


class CrashBackend:
    """A backend with visible side effects in its state dir, for kill -9 tests.

    Devices ``dev-0`` and ``part-0`` (a partition). ``dra_create_partition`` records, then creates
    ``partitions/<dev>``; ``dra_prepare`` records ``bound``, creates ``bound/<dev>``, and when the
    environment has ``DRA_TEST_HANG`` writes ``ready`` and hangs (to be SIGKILLed). Teardown
    removes the files from the journal/records alone and appends to ``calls.log``."""

    def __init__(self, context: BackendContext):
        self.dir = Path(context.state_dir)
        self.dir.mkdir(parents=True, exist_ok=True)

    def log(self, line: str) -> None:
        with open(self.dir / "calls.log", "a") as f:
            f.write(line + "\n")

    @hookimpl
    def dra_discover(self, inventory):
        inventory.add_device(Device("dev-0"))
        inventory.add_device(Device("part-0", data={"parent": "dev-0"}))

    @hookimpl
    async def dra_create_partition(self, ctx, device):
        import os
        if device.name != "part-0":
            return None
        if not os.environ.get("DRA_TEST_NO_RECORD"):
            await ctx.record("partition/part-0", {"name": "part-0"})
        (self.dir / "partitions").mkdir(exist_ok=True)
        (self.dir / "partitions" / "part-0").write_text(ctx.claim.uid)
        if os.environ.get("DRA_TEST_HANG_IN_CREATE"):  # the side effect is done, the record not stored
            (self.dir / "ready").write_text(ctx.claim.uid)
            await asyncio.sleep(3600)
        if os.environ.get("DRA_TEST_FAIL_IN_CREATE"):
            raise RuntimeError("step 2 of the partition failed")
        return {"name": "part-0"}

    @hookimpl
    async def dra_prepare(self, ctx, devices):
        import os
        await ctx.record("bound", [d.name for d in devices])
        (self.dir / "bound").mkdir(exist_ok=True)
        for d in devices:
            (self.dir / "bound" / d.name).write_text(ctx.claim.uid)
        if os.environ.get("DRA_TEST_HANG"):
            (self.dir / "ready").write_text(ctx.claim.uid)
            await asyncio.sleep(3600)
        return PrepareResult(teardown={"bound": [d.name for d in devices]})

    @hookimpl
    def dra_unprepare(self, stored):
        self.log(f"unprepare {stored.claim.uid} completed={stored.completed} "
                 f"physical={stored.physically_prepared} journal={sorted(stored.journal)}")
        names = stored.teardown.get("bound") or stored.journal.get("bound") or []
        for n in names:
            (self.dir / "bound" / n).unlink(missing_ok=True)

    @hookimpl
    def dra_destroy_partition(self, record):
        name = record.get("name") or record["device"]  # a pending record names the device
        self.log(f"destroy {name}" + (" (pending)" if record.get("pending") else ""))
        (self.dir / "partitions" / name).unlink(missing_ok=True)


def crash_factories():
    return [("crash", lambda ctx: CrashBackend(ctx))]


def queued(engine: PrepareEngine, uid: str) -> int:
    """Operations on claim ``uid`` running or waiting in ``engine`` (0 for engines without a
    per-claim queue)."""
    queue = getattr(engine, "_queue", None)
    return queue.depth(uid) if queue is not None else 0
