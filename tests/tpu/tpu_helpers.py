"""Helpers for the tpu backend tests: sample hosts written by examples/hosts/tpu_hosts.py into a
temporary directory, the backend built on them, hooks called as the engine calls them."""
from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path
from typing import Any

from dra_framework.api import (AllocatedDevice, BackendContext, ClaimInfo, Device, Inventory, PrepareContext,
                               StoredClaim)

REPO = Path(__file__).resolve().parents[2]
DRIVER = "tpu.dra-framework.io"


def hosts_module() -> Any:
    spec = importlib.util.spec_from_file_location("tpu_hosts", REPO / "examples/hosts/tpu_hosts.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def build_host(name: str, root: Path, **kw: Any) -> Path:
    return hosts_module().build(name, root, **kw)


def backend(host: Path, state: Path, **options: Any) -> Any:
    from dra_backends.tpu.backend import TpuBackend
    from dra_backends.tpu.options import TpuOptions

    opts = TpuOptions.model_validate({"hostRoot": str(host), "readNodeLabels": False, **options})
    ctx = BackendContext(driver_name=DRIVER, node_name="tpu-node", host_root=host, state_dir=state,
                         cdi_root=state / "cdi")
    state.mkdir(parents=True, exist_ok=True)
    return TpuBackend(opts, ctx)


def discover(b: Any) -> dict[str, Device]:
    inv = Inventory()
    asyncio.run(b.dra_discover(inv))
    return {d.name: d for p in inv.pools for d in p.devices}


def counter_sets(b: Any) -> dict[str, dict[str, Any]]:
    inv = Inventory()
    asyncio.run(b.dra_discover(inv))
    return {c.name: dict(c.counters) for p in inv.pools for c in p.counter_sets}


def prepare(b: Any, devs: list[Device], uid: str = "uid-1", configs: tuple = (), admin: bool = False) -> Any:
    ctx = PrepareContext(ClaimInfo(uid, "default", f"claim-{uid}"))
    alloc = [AllocatedDevice(request="tpu", pool="tpu-node", device=d, configs=configs, admin_access=admin)
             for d in devs]
    result = asyncio.run(b.dra_prepare(ctx, alloc))
    return result, ctx


def unprepare(b: Any, uid: str, ctx: PrepareContext, result: Any = None, completed: bool = True) -> None:
    stored = StoredClaim(ClaimInfo(uid, "default", f"claim-{uid}"), completed=completed, journal=dict(ctx.journal),
                         teardown=dict(result.teardown) if result is not None and completed else {})
    asyncio.run(b.dra_unprepare(stored))
