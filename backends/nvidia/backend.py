"""The ``nvidia`` backend: hook implementations wiring discovery, partitions, sharing, CDI edits
and health together."""
from __future__ import annotations

import asyncio
import dataclasses
import logging
from pathlib import Path
from typing import Any

from dra_framework.api import (ContainerEdits, CounterConsumption, DeviceStatus,
                               PreparedDeviceEdits, PrepareResult, Taint, TaintEffect, bind_driver, hookimpl,
                               merge_edits, restore_journal)

from . import config as cfg
from . import naming, shares, vfio
from .cdi_edits import CdiBuilder
from .discovery import Discoverer, DiscoveryResult
from .executor import Executor, NvidiaSmiExecutor, RecordingExecutor, timeslice_cmd
from .health import HealthWatcher
from .nvml_api import Nvml, NvmlError, normalize_bus_id
from .nvml_source import find_library, open_nvml
from .options import NvidiaOptions
from .mps import MpsManager
from .mps import journal_key as mps_key
from .partitions import MigManager, journal_key, owned_mig_records
from .sharing import DeviceUsers, SharingState

#: Taint of a device whose MPS control daemon died while claims use it.
MPS_DEAD_TAINT = "gpu.nvidia.com/mps-daemon"


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
        self.users = DeviceUsers(state_dir / "users.json")
        self.mig = MigManager(self.nvml, self.log)
        self.mps = MpsManager(self.executor, self.host_root, options.mps_root, state_dir / "mps.json",
                              self.nvml.gpu_responsive, self.log)
        #: device → why its MPS control daemon is considered dead (from the liveness watch)
        self.mps_dead: dict[str, str] = {}
        self.state_dir = state_dir
        share_memory = ((lambda total: shares.memory_capacity(total, options))
                        if options.consumable_shares == "memory" else None)
        self.discoverer = Discoverer(self.nvml, self.host_root, options.mig_strategy, share_memory)
        self.cdi = CdiBuilder(self.host_root, self.driver_root, options.host_driver_root_path,
                              options.nvidia_cdi_hook_path, log=self.log)
        self.result: DiscoveryResult | None = None
        self.health = HealthWatcher(self.nvml, lambda: self.result, set(options.additional_xids_to_ignore),
                                    options.xid_quiet_period_seconds, options.event_wait_ms,
                                    context.request_rediscovery, logger=self.log)
        self.health.extra_taints = self._mps_taints

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
        if self.o.passthrough:
            await asyncio.to_thread(self._add_vfio, res)
        self.result = res
        return res

    def _add_vfio(self, res: DiscoveryResult) -> None:
        """vfio siblings, and the full GPUs consuming the same one-unit counter (backends/nvidia/vfio.py)."""
        facts = {normalize_bus_id(g.info.pci_bus_id): {"uuid": u, "productName": g.info.name}
                 for u, g in res.gpus.items()}
        mig_on = {normalize_bus_id(g.info.pci_bus_id) for g in res.gpus.values() if g.info.mig_enabled}
        devices, sets = vfio.discover(self.host_root, self.o.passthrough_exclude, mig_on, facts)
        names = {cs.name for cs in sets}
        for i, d in enumerate(res.devices):
            cs = naming.counter_set_name(str(d.data.get("bus", "")))
            if d.data.get("kind") == "gpu" and cs in names:
                res.devices[i] = dataclasses.replace(d, consumes_counters=[CounterConsumption(cs, {vfio.COUNTER: 1})])
        res.counter_sets.extend(sets)
        res.devices.extend(devices)

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
        await self.mps.cleanup()  # a daemon whose last claim was released by a killed driver
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
        sharing = getattr(config, "sharing", None)
        if sharing is not None and sharing.strategy == "MPS" and device.device.data.get("kind") == "mig" \
                and self.o.mig_strategy == "dynamic":
            raise ValueError("sharing.strategy: MPS is not supported on dynamic MIG devices (migStrategy "
                             "dynamic); use a full GPU or a static MIG device")
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
            kind = data.get("kind")
            holder = ctx.claim.uid if d.share_id is None else f"{ctx.claim.uid}/{d.share_id}"
            if kind == "gpu":
                edits, status = await self._prepare_gpu(ctx, d, holder, result)
            elif kind == "mig":
                edits, status = await self._prepare_mig(ctx, d, holder)
            elif kind == "vfio":
                edits, status = await self._prepare_vfio(ctx, d, holder)
            else:
                raise RuntimeError(f"device {d.name!r} is not an NVIDIA device known to this backend")
            if d.share_id is not None:
                status["shareID"] = d.share_id
                edits = merge_edits([edits, ContainerEdits(env=shares.share_env(d.name, d.share_id, d.consumed_capacity))])
            result.devices[d.name] = PreparedDeviceEdits(edits, status=DeviceStatus(data=status))
        if any(d.device.data.get("kind") != "vfio" for d in devices):
            result.claim_edits = self.cdi.common(driver_version)
        return result

    def _check_mps_alive(self, name: str) -> None:
        if name in self.mps_dead:
            raise RuntimeError(f"device {name!r} is tainted {MPS_DEAD_TAINT}: {self.mps_dead[name]}")

    async def _use(self, ctx, device: str, holder: str, mode: str) -> None:
        """Register ``holder`` as a user of GPU ``device`` in ``mode`` (journal first); refuse
        combinations the hardware cannot serve (sharing.DeviceUsers)."""
        others = await asyncio.to_thread(self.users.others, device, holder)
        clash = {h: m for h, m in others.items() if m == "vfio" or mode == "vfio" or (m == "mps") != (mode == "mps")}
        if clash:
            h, m = next(iter(clash.items()))
            why = {"vfio": "it is bound to vfio-pci for", "mps": "its MPS control daemon (EXCLUSIVE_PROCESS) serves",
                   "plain": "it is used without MPS by"}[m]
            raise RuntimeError(f"cannot prepare {device!r} for {mode} use: {why} claim {h.split('/')[0]}"
                               + (" (share " + h.split("/", 1)[1] + ")" if "/" in h else ""))
        await ctx.record(f"use/{device}" + (f"#{holder.split('/', 1)[1]}" if "/" in holder else ""),
                         {"device": device, "holder": holder})
        await asyncio.to_thread(self.users.add, device, holder, mode)

    async def _prepare_gpu(self, ctx, d, holder: str, result: PrepareResult) -> tuple[ContainerEdits, dict]:
        data = d.device.data
        uuid = data["uuid"]
        # Admin access (monitoring) gets the GPU as it is: no MIG-mode, time-slice or MPS change.
        if d.admin_access:
            return self.cdi.gpu(int(data["minor"])), {"uuid": uuid}
        self._check_mps_alive(d.name)
        await self._ensure_mig_off(ctx, uuid, d.name)
        found = cfg.effective(d.configs, cfg.GpuConfig)
        conf = found if isinstance(found, cfg.GpuConfig) else None
        sharing = conf.sharing if conf is not None else None
        mps = sharing is not None and sharing.strategy == "MPS"
        # Only where two claims can meet on one GPU (shares, MPS, a vfio sibling): a plain exclusive
        # GPU costs no extra journal write.
        if mps or d.share_id is not None or self.o.passthrough:
            await self._use(ctx, d.name, holder, "mps" if mps else "plain")
        interval = conf.timeslice() if conf is not None else None
        if interval is not None:
            await ctx.record(f"timeslice/{uuid}", interval)
            self.sharing.acquire(uuid, ctx.claim.uid, interval)
            await asyncio.to_thread(self.executor.run, timeslice_cmd(uuid, interval))
            result.teardown["timeslice"].append(uuid)
        parts = [self.cdi.gpu(int(data["minor"]))]
        if mps and sharing is not None:
            mem = shares.consumed_memory(d.consumed_capacity) if d.share_id else None
            parts.append(await self.mps.acquire(self._mps_record(ctx, d), d.name, uuid, uuid, holder,
                                                sharing.mps_config, mem))
        return merge_edits(parts), {"uuid": uuid}

    def _mps_record(self, ctx, d):
        key = mps_key(d.name) + (f"#{d.share_id}" if d.share_id else "")
        return lambda _key, value: ctx.record(key, value)

    async def _prepare_mig(self, ctx, d, holder: str) -> tuple[ContainerEdits, dict]:
        data = d.device.data
        rec = ctx.partitions.get(d.name) or data
        if d.admin_access and self.o.mig_strategy == "dynamic" and not data.get("existing"):
            rec = await self.mig.lookup(data, d.name)  # never created for admin access
        gi, ci = rec.get("giId"), rec.get("ciId")
        if gi is None or ci is None:
            raise RuntimeError(f"MIG device {d.name!r} has no GPU/compute instance (giId={gi}, ciId={ci})")
        parts = [self.cdi.mig(int(data["parentMinor"]), int(gi), int(ci))]
        found = cfg.effective(d.configs, cfg.MigDeviceConfig) if not d.admin_access else None
        sharing = found.sharing if isinstance(found, cfg.MigDeviceConfig) else None
        if sharing is not None and sharing.strategy == "MPS":
            self._check_mps_alive(d.name)
            mig_uuid = rec.get("uuid")
            if not mig_uuid:
                raise RuntimeError(f"MIG device {d.name!r}: no MIG UUID known, cannot start its MPS control daemon")
            mem = shares.consumed_memory(d.consumed_capacity) if d.share_id else None
            parts.append(await self.mps.acquire(self._mps_record(ctx, d), d.name, mig_uuid, None, holder,
                                                sharing.mps_config, mem))
        return merge_edits(parts), {"uuid": rec.get("uuid"), "parentUUID": data["parent"], "giId": gi, "ciId": ci}

    async def _prepare_vfio(self, ctx, d, holder: str) -> tuple[ContainerEdits, dict]:
        bdf, gpu = d.device.data["bus"], d.device.data["gpu"]
        if d.admin_access:
            raise RuntimeError(f"admin access to vfio device {d.name!r}: passthrough rebinds the GPU, which admin "
                               "access must not do")
        fn = vfio.PciFunction.at(self.host_root, bdf)
        why = vfio.pinned(fn) or ("excluded by the passthroughExclude option" if bdf in
                                  {normalize_bus_id(b) for b in self.o.passthrough_exclude} else None)
        if why:
            raise RuntimeError(f"vfio device {d.name!r}: GPU {bdf} is not offered for passthrough: {why}")
        uuid = next((u for u, g in (self.result.gpus.items() if self.result else ())
                     if normalize_bus_id(g.info.pci_bus_id) == bdf), None)
        if uuid is not None and fn.driver != vfio.VFIO_DRIVER:
            try:
                busy = await asyncio.to_thread(self.nvml.gpu_instances, uuid)
            except NvmlError:
                busy = []
            if busy:
                raise RuntimeError(f"vfio device {d.name!r}: GPU {bdf} has {len(busy)} MIG instance(s)")
        await self._use(ctx, gpu, holder, "vfio")
        try:
            changed = await bind_driver(ctx, self.host_root, bdf, vfio.VFIO_DRIVER)
        finally:
            self.ctx.request_rediscovery()  # the NVIDIA device leaves NVML while on vfio-pci
        fn = vfio.PciFunction.at(self.host_root, bdf)
        return vfio.cdi_edits(self.host_root, bdf), {"pciBusID": bdf, "iommuGroup": fn.iommu_group,
                                                     "rebound": changed}

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
        errors: list[str] = []
        # VFIO: back to the original driver from the journal alone (any step, idempotent).
        if any(k.startswith("pci.rebind/") for k in stored.journal):
            try:
                await restore_journal(self.host_root, stored.journal, physically_prepared=stored.physically_prepared)
            except Exception as exc:  # noqa: BLE001 - reported below, the rest still runs
                errors.append(str(exc))
            self.ctx.request_rediscovery()
        # MPS: drop this claim's (or share's) hold; the last one stops the daemon.
        for key, entry in stored.journal.items():
            if key.startswith("mps/") and isinstance(entry, dict):
                device = key[4:].split("#", 1)[0]
                try:
                    await self.mps.release(entry, device, stored.physically_prepared)
                except RuntimeError as exc:
                    errors.append(str(exc))
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
        if errors:
            raise RuntimeError("; ".join(errors))  # users stay registered: the kubelet retries
        for key, entry in stored.journal.items():
            if key.startswith("use/") and isinstance(entry, dict):
                await asyncio.to_thread(self.users.remove, entry["device"], entry["holder"])
        # MIG instances, also half-created ones, are destroyed by dra_destroy_partition: the
        # framework hands it a pending record with this claim's mig/<device> journal entry.

    # ------------------------------------------------------------------ health, shutdown
    def _mps_taints(self, device: str) -> list[tuple[Taint, str]]:
        why = self.mps_dead.get(device)
        return [(Taint(MPS_DEAD_TAINT, "dead", TaintEffect.NO_SCHEDULE), why)] if why else []

    async def _watch_mps(self, report) -> None:
        """Liveness of the MPS control daemons: a dead one taints its device (and fails new
        prepares on it) until its last claim is unprepared."""
        while True:
            dead = await asyncio.to_thread(self.mps.dead_devices)
            for dev in sorted(set(dead) | set(self.mps_dead)):
                if dead.get(dev) != self.mps_dead.get(dev):
                    if dev in dead:
                        self.log.error("%s: tainting it %s", dead[dev], MPS_DEAD_TAINT)
                    self.mps_dead = {**{k: v for k, v in self.mps_dead.items() if k != dev},
                                     **({dev: dead[dev]} if dev in dead else {})}
                    report(self.health.report_for(dev))
            await asyncio.sleep(self.o.mps_watch_seconds)

    @hookimpl
    async def dra_watch_health(self, report):
        async def nvml_health() -> None:
            if not self.o.health_check:
                if self.result is not None:
                    for d in self.result.devices:
                        report(self.health.report_for(d.name))
                await asyncio.Event().wait()
            await self.health.run(report)
        await asyncio.gather(nvml_health(), self._watch_mps(report))

    @hookimpl
    def dra_shutdown(self):
        self.nvml.shutdown()


def parse_device_name(name: str) -> dict[str, Any] | None:
    """What a device name says (for tools and rollback without discovery state)."""
    mig = naming.parse_mig_name(name)
    if mig:
        bus, profile, pid, start = mig
        return {"kind": "mig", "bus": bus, "profile": profile, "profileId": pid, "start": start}
    gpu_bus = naming.parse_gpu_name(name)
    return {"kind": "gpu", "bus": gpu_bus} if gpu_bus else None
