"""The ``tpu`` backend: hook implementations wiring topology sources, discovery, prepare and
health together (docs/tpu.md)."""
from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any, Mapping

from dra_framework.api import (ContainerEdits, CounterSet, Device, PreparedDeviceEdits, PrepareResult, char_device_node,
                               hookimpl, read_json_object, write_json_atomic)

from .config import TpuConfig, check_for_device
from .discovery import Host, devices, log_notes, scan
from .health import HealthWatcher
from .options import TpuOptions
from .prepare import chip_openers, claim_env, describe_openers
from .topology import host_info, node_labels_from_api

VFIO_CONTAINER = "/dev/vfio/vfio"


class TpuBackend:
    """Google TPU chips, their NUMA-aligned sub-host shapes and the whole host."""

    def __init__(self, options: TpuOptions, context: Any) -> None:
        self.o, self.ctx = options, context
        self.root = Path(options.host_root)
        self.log: logging.Logger = getattr(context, "logger", None) or logging.getLogger(__name__)
        self.leases = Path(context.state_dir) / "leases.json"
        self.lease_lock = asyncio.Lock()
        self.host = Host()
        self.published: list[Device] = []
        self.health = HealthWatcher(self.root, f"{context.driver_name}/chip-unhealthy", options.health_interval,
                                    lambda: (self.host.chips, self.published))

    def _labels(self) -> Mapping[str, str]:
        if self.o.node_labels:
            return self.o.node_labels
        if not self.o.read_node_labels:
            return {}
        return node_labels_from_api(self.ctx.node_name, self.o.kubeconfig, self.log)

    def _scan(self) -> tuple[Host, CounterSet | None, list[Device]]:
        info = host_info(self.root, self.o.tpu_env_file, self.o.accelerator_type, self.o.topology, self._labels)
        host = scan(self.root, info)
        counters, devs = devices(host, self.o.base_port)
        log_notes(host, self.log)
        if host.chips:
            self.log.info("TPU discovery: %d %s chips, topology %s from %s, %d devices", len(host.chips),
                          host.generation.name if host.generation else "?", host.topology, info.source, len(devs))
        return host, counters, devs

    # ------------------------------------------------------------------ discovery
    @hookimpl
    async def dra_discover(self, inventory):
        host, counters, devs = await asyncio.to_thread(self._scan)
        if counters is not None:
            inventory.add_counter_set(counters)
        for d in devs:
            inventory.add_device(d)
        self.host, self.published = host, devs

    # ------------------------------------------------------------------ config
    @hookimpl
    def dra_config_types(self):
        return [TpuConfig]

    @hookimpl
    def dra_validate_config(self, config, device):
        if not isinstance(config, TpuConfig):
            return None
        data = device.device.data
        if not data.get("multiHost"):
            return False  # single-host devices need no worker list: a class-wide config is skipped
        check_for_device(config, int(data["hosts"]), device.name)
        return True

    # ------------------------------------------------------------------ prepare
    @hookimpl
    async def dra_prepare(self, ctx, devices):
        datas = [d.device.data for d in devices]
        configs = [c for d in devices for c in d.configs if isinstance(c, TpuConfig)]
        env = claim_env(datas, configs[-1] if configs else None, [d.name for d in devices])
        bdfs = [b for x in datas for b in x["bdfs"]]
        teardown: dict[str, Any] = {}
        if not all(d.admin_access for d in devices):  # admin access (monitoring) neither checks nor leases
            await self._lease(ctx, bdfs, [p for x in datas for p in x["paths"]])
            teardown["leases"] = bdfs
        result = PrepareResult(claim_edits=ContainerEdits(env=env), teardown=teardown)
        for d in devices:
            paths = list(d.device.data["paths"])
            if any(p.startswith("/dev/vfio/") for p in paths):
                paths.append(VFIO_CONTAINER)
            nodes = [char_device_node(self.root, p) for p in paths]
            result.devices[d.name] = PreparedDeviceEdits(ContainerEdits.model_validate({"deviceNodes": nodes}))
        return result

    async def _lease(self, ctx, bdfs: list[str], paths: list[str]) -> None:
        """Refuse chips another prepared claim holds or an unknown process has open; then
        record them as this claim's (``leases.json``: chip address → claim UID)."""
        uid = ctx.claim.uid
        async with self.lease_lock:
            leases = read_json_object(self.leases)
            for bdf in bdfs:
                holder = leases.get(bdf)
                if holder not in (None, uid):
                    raise RuntimeError(f"TPU chip {bdf} is held by prepared claim {holder}")
            if self.o.check_open_processes:
                openers = await asyncio.to_thread(chip_openers, self.root)
                for bdf, path in zip(bdfs, paths, strict=True):
                    if openers.get(path) and leases.get(bdf) != uid:
                        raise RuntimeError(f"TPU chip {bdf}: {describe_openers(path, openers[path])}, a process no "
                                           "prepared claim owns; stop it before the chip is handed out")
            await ctx.record("leases", bdfs)
            leases.update({bdf: uid for bdf in bdfs})
            write_json_atomic(self.leases, leases)

    @hookimpl
    async def dra_unprepare(self, stored):
        bdfs = stored.teardown.get("leases") or stored.journal.get("leases") or []
        if not bdfs:
            return
        async with self.lease_lock:
            leases = read_json_object(self.leases)
            for bdf in bdfs:
                if leases.get(bdf) == stored.claim.uid:
                    del leases[bdf]
            write_json_atomic(self.leases, leases)

    # ------------------------------------------------------------------ health
    @hookimpl
    async def dra_watch_health(self, report):
        await self.health.run(report)

