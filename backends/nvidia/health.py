"""NVML events → device taints (KEP-5055) and health (KEP-4680).

Rules (see README "Health"):

* XID critical error → ``gpu.nvidia.com/xid=<xid>``: NoSchedule, or None (informational) for the
  application-level XIDs 13, 31, 43, 45, 68, 109 and ``additionalXidsToIgnore``.
* double-bit ECC → ``gpu.nvidia.com/ecc=double-bit`` NoSchedule (single-bit: corrected, logged).
* GPU lost → ``gpu.nvidia.com/gpu-lost=true`` NoSchedule.
* event registration failed/unsupported → ``gpu.nvidia.com/unmonitored=true`` None, health Unknown.
* Scope: an event carrying GI/CI ids taints only that MIG device; a GPU-wide event taints the
  full GPU and every MIG device of it.
* Recovery: an XID/ECC taint is removed once ``xidQuietPeriodSeconds`` passed without a new
  event of that key on the device while the GPU is responsive (0: never); ``gpu-lost`` is removed
  as soon as NVML answers for the GPU again (then discovery is re-run).

The blocking ``nvmlEventSetWait`` runs in a thread with ``eventWaitMs`` timeout, so cancelling
the watcher returns within one timeout.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Callable

from dra_framework.api import Health, HealthReport, Taint, TaintEffect

from . import naming
from . import nvml_api as api
from .discovery import DiscoveryResult
from .nvml_api import Event, Nvml, NvmlError

log = logging.getLogger(__name__)

DEFAULT_IGNORED_XIDS = frozenset({13, 31, 43, 45, 68, 109})
XID, ECC, LOST, UNMONITORED = "gpu.nvidia.com/xid", "gpu.nvidia.com/ecc", "gpu.nvidia.com/gpu-lost", "gpu.nvidia.com/unmonitored"


@dataclass
class _Active:
    taint: Taint
    since: float
    gpu: str
    message: str


class HealthWatcher:
    def __init__(self, nvml: Nvml, result: Callable[[], DiscoveryResult | None], ignored_xids: set[int],
                 quiet_period: float, wait_ms: int, rediscover: Callable[[], None],
                 clock: Callable[[], float] = time.monotonic, logger: logging.Logger | None = None) -> None:
        self.nvml, self.result = nvml, result
        self.ignored = set(DEFAULT_IGNORED_XIDS) | set(ignored_xids)
        self.quiet, self.wait_ms, self.rediscover, self.clock = quiet_period, wait_ms, rediscover, clock
        self.log = logger or log
        #: device name → taint key → active taint
        self.active: dict[str, dict[str, _Active]] = {}
        self.unmonitored: set[str] = set()
        #: More taints from outside NVML (a dead MPS control daemon): device → [(taint, message)]
        self.extra_taints: Callable[[str], list[tuple[Taint, str]]] = lambda _device: []

    # ------------------------------------------------------------------ mapping
    def devices_of(self, uuid: str) -> list[str]:
        res = self.result()
        if res is None:
            return []
        return [d.name for d in res.devices
                if d.data.get("uuid") == uuid and d.data.get("kind") == "gpu" or d.data.get("parent") == uuid]

    def _mig_device(self, uuid: str, gi_id: int) -> str | None:
        res = self.result()
        g = res.gpus.get(uuid) if res else None
        if g is None:
            return None
        try:
            gis = self.nvml.gpu_instances(uuid)
        except NvmlError:
            gis = g.instances
        gi = next((x for x in gis if x.id == gi_id), None)
        p = g.profile(gi.profile_id) if gi else None
        if gi is None or p is None:
            return None
        return naming.mig_name(g.info.pci_bus_id, p.name, p.id, gi.start)

    # ------------------------------------------------------------------ state changes
    def _set(self, devices: list[str], taint: Taint, gpu: str, message: str, now: float) -> set[str]:
        for d in devices:
            self.active.setdefault(d, {})[taint.key] = _Active(taint, now, gpu, message)
        return set(devices)

    def apply(self, ev: Event, now: float) -> set[str]:
        """Apply one event (blocking NVML lookups); return the device names whose taints changed."""
        if ev.kind == "gpu-lost":
            res = self.result()
            uuids = [ev.uuid] if ev.uuid else [u for u in (res.gpus if res else {}) if not self.nvml.gpu_responsive(u)]
            if not uuids and res:
                uuids = list(res.gpus)  # NVML said lost without naming the GPU and all answer: taint all
            changed: set[str] = set()
            for u in uuids:
                self.log.error("GPU %s is lost", u)
                changed |= self._set(self.devices_of(u), Taint(LOST, "true", TaintEffect.NO_SCHEDULE), u,
                                     f"GPU {u} fell off the bus (NVML: GPU is lost)", now)
            return changed
        if ev.kind == "ecc-single":
            self.log.info("single-bit ECC error (corrected) on GPU %s", ev.uuid)
            return set()
        if ev.gi_id != api.NO_INSTANCE:
            name = self._mig_device(ev.uuid, ev.gi_id)
            if name is None:
                self.log.warning("%s event %d on GPU %s GI %d CI %d: no such MIG device published; ignored",
                                 ev.kind, ev.data, ev.uuid, ev.gi_id, ev.ci_id)
                return set()
            devices = [name]
            scope = f"GPU {ev.uuid} GI {ev.gi_id} CI {ev.ci_id}"
        else:
            devices = self.devices_of(ev.uuid)
            scope = f"GPU {ev.uuid}"
        if ev.kind == "xid":
            effect = TaintEffect.NONE if ev.data in self.ignored else TaintEffect.NO_SCHEDULE
            self.log.log(logging.INFO if effect is TaintEffect.NONE else logging.ERROR, "XID %d on %s", ev.data, scope)
            return self._set(devices, Taint(XID, str(ev.data), effect), ev.uuid, f"XID {ev.data} on {scope}", now)
        if ev.kind == "ecc-double":
            self.log.error("double-bit ECC error on %s", scope)
            return self._set(devices, Taint(ECC, "double-bit", TaintEffect.NO_SCHEDULE), ev.uuid,
                             f"double-bit ECC error on {scope}", now)
        self.log.debug("ignoring NVML event %s on %s", ev.kind, scope)
        return set()

    def expire(self, now: float) -> set[str]:
        """Remove taints whose recovery rule is met (blocking: asks NVML about lost GPUs)."""
        changed: set[str] = set()
        responsive: dict[str, bool] = {}
        recovered = False
        for dev, keys in list(self.active.items()):
            for key, a in list(keys.items()):
                if a.gpu not in responsive:
                    responsive[a.gpu] = self.nvml.gpu_responsive(a.gpu)
                if not responsive[a.gpu]:
                    continue
                if key == LOST or (self.quiet > 0 and now - a.since >= self.quiet):
                    del keys[key]
                    changed.add(dev)
                    recovered |= key == LOST
            if not keys:
                del self.active[dev]
        if recovered:
            self.log.info("lost GPU(s) answer again: re-running discovery")
            self.rediscover()
        return changed

    def report_for(self, device: str) -> HealthReport:
        taints = [a.taint for a in self.active.get(device, {}).values()]
        messages = [a.message for a in self.active.get(device, {}).values()]
        for taint, message in self.extra_taints(device):
            taints.append(taint)
            messages.append(message)
        if device in self.unmonitored:
            taints.append(Taint(UNMONITORED, "true", TaintEffect.NONE))
        if any(t.effect != TaintEffect.NONE for t in taints):
            health = Health.UNHEALTHY
        elif device in self.unmonitored:
            health, messages = Health.UNKNOWN, messages + ["NVML health events are not available for this GPU"]
        else:
            health = Health.HEALTHY
        return HealthReport(device=device, health=health, message="; ".join(messages), taints=taints)

    # ------------------------------------------------------------------ the loop
    async def run(self, report: Callable[[HealthReport], None]) -> None:
        res = self.result()
        gpus = list(res.gpus) if res else []
        es = await asyncio.to_thread(self.nvml.event_set)
        for u in gpus:
            try:
                await asyncio.to_thread(self.nvml.register_events, es, u, api.HEALTH_EVENT_MASK)
            except NvmlError as exc:
                self.log.warning("GPU %s: NVML event registration failed (%s): marking its devices unmonitored", u, exc)
                self.unmonitored.update(self.devices_of(u))
        for d in (res.devices if res else []):
            report(self.report_for(d.name))
        loop = asyncio.get_running_loop()
        fut: asyncio.Future | None = None
        try:
            while True:
                fut = loop.run_in_executor(None, self.nvml.wait_event, es, self.wait_ms)
                ev = await fut
                fut = None
                now = self.clock()
                changed: set[str] = set()
                if ev is not None:
                    changed |= await asyncio.to_thread(self.apply, ev, now)
                if self.active:
                    changed |= await asyncio.to_thread(self.expire, now)
                for name in sorted(changed):
                    report(self.report_for(name))
        finally:
            if fut is not None and not fut.done():
                fut.add_done_callback(lambda _f: self.nvml.free_event_set(es))
            else:
                self.nvml.free_event_set(es)
