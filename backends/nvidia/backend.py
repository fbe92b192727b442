"""The ``nvidia`` backend: hook implementations wiring discovery, partitions, sharing, CDI edits
and health together."""
from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from dra_framework.api import DeviceStatus, Health, HealthReport, PreparedDeviceEdits, PrepareResult, hookimpl

from . import config as cfg
from . import naming
from .cdi_edits import CdiBuilder
from .discovery import Discoverer, DiscoveryResult
from .executor import Executor, NvidiaSmiExecutor, RecordingExecutor, timeslice_cmd
from .health import HealthWatcher
from .nvml_api import Nvml, NvmlError, normalize_bus_id
from .nvml_source import find_library, open_nvml
from .options import NvidiaOptions
from .partitions import MigManager, journal_key, owned_mig_records
from .sharing import SharingState


class NvidiaBackend:
    """NVIDIA GPUs and MIG devices (static and dynamic) through NVML."""

    def __init__(self, options: NvidiaOptions, context: Any, nvml: Nvml | None = None,
                 executor: Executor | None = None) -> None:
        self.o, self.ctx = options, context
        self.log: logging.Logger = getattr(context, "logger", None) or logging.getLogger(__name__)
        self.host_root = Path(options.host_root)
        self.driver_root = Path(options.driver_root)
        state_dir = Path(context.state_dir)
        self.nvml: Nvml = nvml or open_nvml(options.nvml, self.driver_root, self.host_root, state_dir)
        try:
            self.nvml.init()
        except NvmlError as exc:
            raise ValueError(f"NVML init failed ({exc}); is the NVIDIA driver loaded and driverRoot "
                             f"{options.driver_root!r} right?") from None
        self.executor: Executor = executor or self._make_executor(state_dir)
        self.sharing = SharingState(state_dir / "sharing.json")
        self.mig = MigManager(self.nvml, self.log)
        self.state_dir = state_dir
        self.discoverer = Discoverer(self.nvml, self.host_root, options.mig_strategy)
        self.cdi = CdiBuilder(self.host_root, self.driver_root, options.host_driver_root_path,
                              options.nvidia_cdi_hook_path, log=self.log)
        self.result: DiscoveryResult | None = None
        self.health = HealthWatcher(self.nvml, lambda: self.result, set(options.additional_xids_to_ignore),
                                    options.xid_quiet_period_seconds, options.event_wait_ms,
                                    context.request_rediscovery, logger=self.log)

    def _make_executor(self, state_dir: Path) -> Executor:
        kind = self.o.executor
        if kind == "auto":
            kind = "nvidia-smi" if self.o.nvml == "real" else "record"
        if kind == "record":
            return RecordingExecutor(state_dir / "executor.jsonl")
        smi = next((self.driver_root / d / "nvidia-smi" for d in ("usr/bin", "bin")
                    if (self.driver_root / d / "nvidia-smi").exists()), None)
        if smi is None:
            raise ValueError(f"driverRoot: nvidia-smi not found under {self.driver_root}/usr/bin or /bin")
        return NvidiaSmiExecutor(smi, find_library(self.driver_root))

    # ------------------------------------------------------------------ discovery
    async def _scan(self) -> DiscoveryResult:
        res = await asyncio.to_thread(self.discoverer.scan)
        self.discoverer.build(res, self.mig.adopted, self.mig.refused)
        self.result = res
        return res

    @hookimpl
    async def dra_discover(self, inventory):
        res = await self._scan()
        for cs in res.counter_sets:
            inventory.add_counter_set(cs)
        for d in res.devices:
            inventory.add_device(d)

    @hookimpl
    async def dra_reconcile_partitions(self, owned):
        # An older release kept half-created MIG instances in this file; the framework's
        # checkpoint (pending partition entries in ``owned``) holds them now.
        (self.state_dir / "mig-inflight.json").unlink(missing_ok=True)
        if self.o.mig_strategy != "dynamic":
            return
        sysinfo = await asyncio.to_thread(self.nvml.system)
        mig_owned = owned_mig_records(owned, {normalize_bus_id(g.pci_bus_id): g.uuid for g in sysinfo.gpus})
        changed = await self.mig.reconcile([g.uuid for g in sysinfo.gpus if g.mig_enabled], mig_owned,
                                           self.o.unowned_mig_policy)
        if changed and self.result is not None:
            self.ctx.request_rediscovery()

    # ------------------------------------------------------------------ config
    @hookimpl
    def dra_config_types(self):
        return list(cfg.CONFIG_TYPES)

    @hookimpl
    def dra_validate_config(self, config, device):
        # A GpuConfig for a MIG device (or the reverse) does not apply: the engine skips it when it
        # is claim- or class-wide and fails the claim when it names the device's request.
        if not cfg.applies_to(config, str(device.device.attributes.get("type", ""))):
            return False
        cfg.check_applicable(config, device.name, str(device.device.attributes.get("type", "")))
        return True

    # ------------------------------------------------------------------ partitions
    @hookimpl
    async def dra_create_partition(self, ctx, device):
        data = device.device.data
        if data.get("kind") != "mig" or self.o.mig_strategy != "dynamic":
            return None
        if data.get("existing"):  # an adopted instance: nothing to create, never destroyed by us
            return {"device": device.name, "parent": data["parent"], "bus": data["bus"],
                    "parentMinor": data["parentMinor"], "profileId": data["profileId"], "start": data["start"],
                    "giId": data.get("giId"), "ciId": data.get("ciId"), "uuid": data.get("uuid"),
                    "adopted": True, "step": "ready"}
        previous = ctx.journal.get(journal_key(device.name))
        return await self.mig.create(ctx.record, data, device.name, previous)

    @hookimpl
    async def dra_destroy_partition(self, record):
        if record.get("recovered") and not record.get("journal"):
            # The checkpoint was lost; the claim's CDI spec named this MIG device, so the instance
            # at the placement its name encodes was this claim's.
            sysinfo = await asyncio.to_thread(self.nvml.system)
            bus = {normalize_bus_id(g.pci_bus_id): g.uuid for g in sysinfo.gpus}
            found = owned_mig_records([record], bus)
            record = {**found[0], "device": record["device"], "step": "creating"} if found else {}
        await self.mig.destroy(record)

    # ------------------------------------------------------------------ prepare
    @hookimpl
    async def dra_prepare(self, ctx, devices):
        res = self.result
        driver_version = res.system.driver_version if res else ""
        result = PrepareResult(teardown={"timeslice": []})
        for d in devices:
            data = d.device.data
            if data.get("kind") == "gpu":
                uuid = data["uuid"]
                # Admin access (monitoring) gets the GPU as it is: no MIG-mode or time-slice change.
                if not d.admin_access:
                    await self._ensure_mig_off(ctx, uuid, d.name)
                conf = cfg.effective(d.configs, cfg.GpuConfig) if not d.admin_access else None
                interval = conf.timeslice() if conf is not None else None
                if interval is not None:
                    await ctx.record(f"timeslice/{uuid}", interval)
                    self.sharing.acquire(uuid, ctx.claim.uid, interval)
                    await asyncio.to_thread(self.executor.run, timeslice_cmd(uuid, interval))
                    result.teardown["timeslice"].append(uuid)
                edits = self.cdi.gpu(int(data["minor"]))
                result.devices[d.name] = PreparedDeviceEdits(edits, status=DeviceStatus(data={"uuid": uuid}))
            elif data.get("kind") == "mig":
                rec = ctx.partitions.get(d.name) or data
                if d.admin_access and self.o.mig_strategy == "dynamic" and not data.get("existing"):
                    rec = await self.mig.lookup(data, d.name)  # never created for admin access
                gi, ci = rec.get("giId"), rec.get("ciId")
                if gi is None or ci is None:
                    raise RuntimeError(f"MIG device {d.name!r} has no GPU/compute instance (giId={gi}, ciId={ci})")
                edits = self.cdi.mig(int(data["parentMinor"]), int(gi), int(ci))
                status = {"uuid": rec.get("uuid"), "parentUUID": data["parent"], "giId": gi, "ciId": ci}
                result.devices[d.name] = PreparedDeviceEdits(edits, status=DeviceStatus(data=status))
            else:
                raise RuntimeError(f"device {d.name!r} is not an NVIDIA device known to this backend")
        result.claim_edits = self.cdi.common(driver_version)
        return result

    async def _ensure_mig_off(self, ctx, uuid: str, name: str) -> None:
        """Dynamic MIG on Hopper: the full GPU needs MIG mode off; turn it off if no instance is left."""
        if self.o.mig_strategy != "dynamic":
            return
        sysinfo = await asyncio.to_thread(self.nvml.system)
        g = next((g for g in sysinfo.gpus if g.uuid == uuid), None)
        if g is None or not g.mig_enabled:
            return
        async with self.mig.lock(uuid):
            if await asyncio.to_thread(self.nvml.gpu_instances, uuid):
                raise RuntimeError(f"cannot prepare full GPU {name!r}: it still has MIG instances")
            await ctx.record(f"migmode/{uuid}", "disabled")
            try:
                await asyncio.to_thread(self.nvml.set_mig_mode, uuid, False)
            except NvmlError as exc:
                raise RuntimeError(f"cannot prepare full GPU {name!r}: disabling MIG mode failed: {exc}") from None

    # ------------------------------------------------------------------ unprepare
    @hookimpl
    async def dra_unprepare(self, stored):
        uid = stored.claim.uid
        if stored.completed:
            gpus = list(stored.teardown.get("timeslice", []))
        else:
            gpus = [k.split("/", 1)[1] for k in stored.journal if k.startswith("timeslice/")]
        for uuid in gpus:
            holders = self.sharing.holders(uuid)
            if uid not in holders:
                continue  # already released (an unprepare retry)
            others = set(holders) - {uid}
            if not others and stored.physically_prepared:
                if await asyncio.to_thread(self.nvml.gpu_responsive, uuid):
                    await asyncio.to_thread(self.executor.run, timeslice_cmd(uuid, "Default"))
                else:
                    self.log.warning("GPU %s does not answer: time-slice not reset", uuid)
            self.sharing.release(uuid, uid)
        # MIG instances, also half-created ones, are destroyed by dra_destroy_partition: the
        # framework hands it a pending record with this claim's mig/<device> journal entry.

    # ------------------------------------------------------------------ health, shutdown
    @hookimpl
    async def dra_watch_health(self, report):
        if not self.o.health_check:
            if self.result is not None:
                for d in self.result.devices:
                    report(HealthReport(device=d.name, health=Health.HEALTHY))
            await asyncio.Event().wait()
        await self.health.run(report)

    @hookimpl
    def dra_shutdown(self):
        self.nvml.shutdown()


def parse_device_name(name: str) -> dict[str, Any] | None:
    """What a device name says (for tools and rollback without discovery state)."""
    mig = naming.parse_mig_name(name)
    if mig:
        bus, profile, pid, start = mig
        return {"kind": "mig", "bus": bus, "profile": profile, "profileId": pid, "start": start}
    bus = naming.parse_gpu_name(name)
    return {"kind": "gpu", "bus": bus} if bus else None
