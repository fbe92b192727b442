"""The ``fpga`` backend: hook implementations (docs/fpga.md)."""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from dra_framework.api import (ContainerEdits, Device, DeviceNode, DeviceStatus, PreparedDeviceEdits, PrepareResult,
                               hookimpl, watch_hotplug)

from . import discovery
from .config import FpgaConfig, effective
from .discovery import Slot
from .executor import Executor, KernelExecutor, ProgramError
from .health import MISSING, HealthLoop, fingerprint
from .ids import normalize_uuid
from .images import ImageError, ImageStore
from .options import FpgaOptions
from .programming import JOURNAL_PREFIX, InFlight, Programmer


class FpgaBackend:
    """Intel DFL ports and AMD Alveo cards; programs the requested function on prepare."""

    def __init__(self, options: FpgaOptions, context: Any, executor: Executor | None = None) -> None:
        self.o, self.ctx = options, context
        self.log: logging.Logger = getattr(context, "logger", None) or logging.getLogger(__name__)
        self.root = Path(options.host_root)
        self.state_dir = Path(context.state_dir)
        self.store = ImageStore(self.root, options.image_dirs, options.max_image_bytes)
        self.executor: Executor = executor or self._make_executor()
        self.inflight = InFlight(self.state_dir / "programming.json")
        self.programmer = Programmer(self.store, self.executor, self.inflight, self._changed)
        self.active: set[str] = set()
        self._lock = threading.Lock()
        self.published: dict[str, tuple[Any, ...]] = {}
        self.known: dict[str, tuple[Device, float]] = {}   # name → (last Device, last seen)
        self.health = HealthLoop(self._scan, lambda: dict(self.published), self.inflight.all,
                                 lambda: set(self.active), context.request_rediscovery, options.health_interval)
        self.hotplug = watch_hotplug(context) if options.hotplug else None
        for device, entry in self.inflight.all().items():
            self.log.warning("FPGA device %s: %s programming of %s found at start-up (previous function %s); "
                             "tainted until the claim is retried or unprepared", device, entry.get("state"),
                             entry.get("target"), entry.get("previous"))

    def _make_executor(self) -> Executor:
        kind = self.o.executor
        if kind == "auto":
            kind = "kernel" if str(self.root) == "/" else "fake"
        if kind == "fake":
            from .fake.executor import FakeExecutor
            return FakeExecutor(self.state_dir)
        return KernelExecutor(self.root, self.o.xbmgmt, self.state_dir / "staging", self.o.program_timeout)

    def _scan(self) -> list[Slot]:
        return discovery.scan(self.root)

    def _slot(self, name: str) -> Slot | None:
        return next((s for s in self._scan() if s.name == name), None)

    def _changed(self) -> None:
        self.health.poke()
        self.ctx.request_rediscovery()

    # ------------------------------------------------------------------ discovery
    @hookimpl
    def dra_discover(self, inventory):
        now = time.monotonic()
        published: dict[str, tuple[Any, ...]] = {}
        for slot in self._scan():
            dev = slot.device()
            inventory.add_device(dev)
            self.known[slot.name] = (dev, now)
            published[slot.name] = fingerprint(slot)
        # A card that vanished (reset in progress) stays published under its name, tainted by
        # the health loop as missing, for keepMissingSeconds.
        for name, (dev, seen) in list(self.known.items()):
            if name in published:
                continue
            if now - seen > self.o.keep_missing:
                del self.known[name]
                continue
            inventory.add_device(dev)
            published[name] = MISSING
        self.published = published

    # ------------------------------------------------------------------ config
    @hookimpl
    def dra_config_types(self):
        return [FpgaConfig]

    @hookimpl
    def dra_validate_config(self, config, device):
        if not isinstance(config, FpgaConfig):
            return False
        if config.wants_function and not device.admin_access and not self.o.image_dirs:
            raise ValueError("afuId/image: programming is off on this node (the fpga backend's imageDirs is empty)")
        return True

    # ------------------------------------------------------------------ prepare
    @hookimpl
    async def dra_prepare(self, ctx, devices):
        result = PrepareResult(teardown={"programmed": []})
        for d in devices:
            slot = self._slot(d.name)
            if slot is None:
                raise RuntimeError(f"FPGA device {d.name} is not present on this node (reset in progress or removed)")
            if slot.problem:
                raise RuntimeError(f"FPGA device {d.name} is unusable: {slot.reason}")
            cfg = effective(d.configs) or FpgaConfig.model_validate({})
            if cfg.wants_function and not d.admin_access:
                image = self.programmer.select(slot, cfg)       # all checks, before any write
                async with ctx.lock(f"fpga/{slot.fme.fn.bdf if slot.fme else slot.fn.bdf}"):
                    with self._lock:
                        self.active.add(d.name)
                    try:
                        if await self.programmer.ensure(ctx.record, slot, image):
                            result.teardown["programmed"].append(d.name)
                    finally:
                        with self._lock:
                            self.active.discard(d.name)
            result.devices[d.name] = self._edits(slot, cfg, d.admin_access)
        return result

    def _edits(self, slot: Slot, cfg: FpgaConfig, admin: bool) -> PreparedDeviceEdits:
        nodes = []
        for path, nums in slot.nodes(cfg.mode == "self" and not admin):
            if nums is None:
                nodes.append(DeviceNode(path=path))
            else:
                nodes.append(DeviceNode(path=path, type="c", major=nums[0], minor=nums[1]))
        afu, iface = slot.afu_id() or "", slot.interface_id() or ""
        env = {"FPGA_FAMILY": slot.family, "FPGA_PCI_ADDRESS": slot.fn.bdf, "FPGA_AFU_ID": afu,
               "FPGA_INTERFACE_ID": iface, "FPGA_DEVICE_NODE": nodes[0].path if nodes else ""}
        status = DeviceStatus(data={"afuId": afu, "interfaceId": iface, "pciBusID": slot.fn.bdf})
        return PreparedDeviceEdits(ContainerEdits.model_validate({"env": env, "deviceNodes": nodes}), status=status)

    # ------------------------------------------------------------------ unprepare
    @hookimpl
    async def dra_unprepare(self, stored):
        if not stored.physically_prepared:
            return  # rebooted since: the card lost its partial image anyway
        entries = {k[len(JOURNAL_PREFIX):]: v for k, v in stored.journal.items() if k.startswith(JOURNAL_PREFIX)}
        for device, entry in entries.items():
            if not stored.completed or entry.get("step") != "done":
                await self.programmer.restore(self._slot(device), device, dict(entry), "rollback of an unfinished prepare")
        if stored.completed:
            for device in stored.devices:
                await self._restore_default(device)

    async def _restore_default(self, device: str) -> None:
        slot = self._slot(device)
        if slot is None or slot.problem:
            return
        spec = self.o.default_functions.get(slot.interface_id() or "")
        if not spec or slot.afu_id() == spec:
            return
        key = "afuId" if normalize_uuid(spec) == spec else "image"
        cfg = FpgaConfig.model_validate({key: spec})
        try:
            image = self.programmer.select(slot, cfg)
        except ImageError as exc:
            self.log.error("FPGA device %s: default function %s not loaded: %s", device, spec, exc)
            return
        if slot.afu_id() == image.afu_id:
            return
        await self.programmer.restore(slot, device, {"target": image.afu_id}, "loading the default function")

    # ------------------------------------------------------------------ health, shutdown
    @hookimpl
    async def dra_watch_health(self, report):
        await self.health.run(report)

    @hookimpl
    def dra_shutdown(self):
        if self.hotplug is not None:
            self.hotplug.stop()


__all__ = ["FpgaBackend", "ProgramError"]
