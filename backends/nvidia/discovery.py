"""Turn what NVML reports into published devices and counter sets.

Full GPUs, static MIG devices, and (``migStrategy: dynamic``) one partitionable device per MIG
profile x placement, all consuming one counter set per GPU (KEP-4815), the full GPU consuming
every counter.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from dra_framework.api import Capacity, CounterConsumption, CounterSet, Device, Taint, TaintEffect, Version

from . import naming, sysfs
from .nvml_api import GiProfile, GpuInfo, GpuInstance, MigDevice, Nvml, NvmlError, SystemInfo

log = logging.getLogger(__name__)

STD = "resource.kubernetes.io"
MIB = 1 << 20
#: Taint on every device of a GPU whose unowned MIG instances the ``refuse`` policy left alone.
UNMANAGED_MIG_TAINT = "gpu.nvidia.com/unmanaged-mig"


def cuda_version(v: int) -> str:
    """NVML's integer (12040) → ``12.4.0`` as the NVIDIA driver renders it."""
    return f"{v // 1000}.{(v % 1000) // 10}.0"


@dataclass
class GpuState:
    """One physical GPU as last discovered."""

    info: GpuInfo
    name: str
    profiles: list[GiProfile] = field(default_factory=list)
    instances: list[GpuInstance] = field(default_factory=list)
    mig_devices: list[MigDevice] = field(default_factory=list)
    numa: int | None = None
    root: str | None = None

    @property
    def memory_slices(self) -> int:
        return max((sz for p in self.profiles for _, sz in p.placements), default=0)

    def profile(self, profile_id: int) -> GiProfile | None:
        return next((p for p in self.profiles if p.id == profile_id), None)


@dataclass
class DiscoveryResult:
    system: SystemInfo
    gpus: dict[str, GpuState] = field(default_factory=dict)  # by uuid
    devices: list[Device] = field(default_factory=list)
    counter_sets: list[CounterSet] = field(default_factory=list)

    def gpu_by_bus(self, bus: str) -> GpuState | None:
        return next((g for g in self.gpus.values() if g.info.pci_bus_id == bus), None)


def _counters(p: GiProfile) -> dict[str, int]:
    return {"multiprocessors": p.multiprocessors, "copy-engines": p.copy_engines, "decoders": p.decoders,
            "encoders": p.encoders, "jpeg-engines": p.jpeg_engines, "ofa-engines": p.ofa_engines,
            "memory": p.memory_mib * MIB}


def counter_set_for(gpu: GpuState) -> dict[str, int]:
    """Per counter the maximum over profiles, except ``memory``: the largest per-slice memory
    scaled to all slices, so that any set of non-overlapping placements fits (equal to the full
    profile's memory on A100/H100; larger on boards whose 1-slice profile exceeds 1/8 of it)."""
    n = gpu.memory_slices
    out: dict[str, int] = {}
    for p in gpu.profiles:
        for k, v in _counters(p).items():
            out[k] = max(out.get(k, 0), v)
        for _, size in p.placements[:1]:
            out["memory"] = max(out["memory"], -(-p.memory_mib * MIB * n // size))
    out = {k: v for k, v in out.items() if v > 0}
    out.update({f"memory-slice-{i}": 1 for i in range(n)})
    return out


def mig_consumption(gpu: GpuState, p: GiProfile, start: int, size: int, counters: dict[str, int]) -> dict[str, int]:
    c = {k: v for k, v in _counters(p).items() if k in counters and v > 0}
    c.update({f"memory-slice-{i}": 1 for i in range(start, start + size)})
    return c


class Discoverer:
    def __init__(self, nvml: Nvml, host_root: Path, mig_strategy: str,
                 share_memory: Callable[[int], Capacity] | None = None) -> None:
        self.nvml, self.host_root, self.mig_strategy = nvml, host_root, mig_strategy
        #: consumableShares: memory bytes → the consumable ``memory`` capacity (backends/nvidia/shares.py)
        self.share_memory = share_memory

    def _shared(self, dev: Device) -> Device:
        """``dev`` published for consumable shares, when enabled and its memory fits the options."""
        mem = dev.capacity.get("memory") if self.share_memory is not None else None
        if self.share_memory is None or mem is None:
            return dev
        try:
            cap = self.share_memory(int(mem.value if isinstance(mem, Capacity) else mem))
        except ValueError as exc:
            log.warning("device %s is published unshared: %s", dev.name, exc)
            return dev
        return dataclasses.replace(dev, capacity={**dev.capacity, "memory": cap}, allow_multiple_allocations=True)

    def scan(self) -> DiscoveryResult:
        """Query NVML and sysfs (blocking)."""
        res = DiscoveryResult(self.nvml.system())
        for info in res.system.gpus:
            g = GpuState(info, naming.gpu_name(info.pci_bus_id),
                         numa=sysfs.numa_node(self.host_root, info.pci_bus_id),
                         root=sysfs.pcie_root(self.host_root, info.pci_bus_id))
            if info.mig_capable and self.mig_strategy != "none":
                try:
                    g.profiles = self.nvml.gi_profiles(info.uuid)
                    if info.mig_enabled:
                        g.instances = self.nvml.gpu_instances(info.uuid)
                        g.mig_devices = self.nvml.mig_devices(info.uuid)
                except NvmlError as exc:
                    log.warning("GPU %s (%s): cannot read MIG state: %s", g.name, info.uuid, exc)
            res.gpus[info.uuid] = g
        return res

    def common_attributes(self, res: DiscoveryResult, g: GpuState) -> dict[str, Any]:
        info = g.info
        attrs: dict[str, Any] = {
            "productName": info.name, "brand": info.brand, "architecture": info.architecture,
            "cudaComputeCapability": Version("%d.%d.0" % info.cuda_compute_capability),
            "driverVersion": Version(res.system.driver_version),
            "cudaDriverVersion": Version(cuda_version(res.system.cuda_driver_version)),
            f"{STD}/pciBusID": info.pci_bus_id,
        }
        if g.root:
            attrs[f"{STD}/pcieRoot"] = g.root
        if g.numa is not None:
            attrs[f"{STD}/numaNode"] = g.numa
        return attrs

    def build(self, res: DiscoveryResult, adopted: dict[str, list[GpuInstance]] | None = None,
              tainted: set[str] | None = None) -> None:
        """Fill ``res.devices``/``res.counter_sets``. ``adopted``: GPU uuid → unowned instances
        published as they are (dynamic + adopt); ``tainted``: GPU uuids refused (unmanaged MIG)."""
        adopted = adopted or {}
        tainted = tainted or set()
        for uuid, g in sorted(res.gpus.items(), key=lambda kv: kv[1].name):
            info = g.info
            common = self.common_attributes(res, g)
            taints = [Taint(UNMANAGED_MIG_TAINT, "true", TaintEffect.NO_SCHEDULE)] if uuid in tainted else []
            gpu_data = {"kind": "gpu", "uuid": uuid, "minor": info.minor, "bus": info.pci_bus_id}
            gpu_cap = {"memory": Capacity(info.memory_bytes)} if info.memory_bytes else {}
            gpu_attrs = {"type": "gpu", "uuid": uuid, **common}
            devices: list[Device] = []
            if self.mig_strategy == "dynamic" and g.profiles:
                counters = counter_set_for(g)
                cs = naming.counter_set_name(info.pci_bus_id)
                res.counter_sets.append(CounterSet(cs, counters))
                mine = adopted.get(uuid, [])
                busy = {i for gi in mine for i in range(gi.start, gi.start + gi.size)}
                ampere_locked = info.mig_enabled and info.architecture == "Ampere"
                if not mine and not ampere_locked:
                    devices.append(Device(g.name, attributes=gpu_attrs, capacity=gpu_cap,
                                          consumes_counters=[CounterConsumption(cs, dict(counters))],
                                          taints=taints, data=gpu_data))
                by_placement = {(gi.profile_id, gi.start): gi for gi in mine}
                for p in g.profiles:
                    for start, size in p.placements:
                        gi = by_placement.get((p.id, start))
                        if gi is None and busy & set(range(start, start + size)):
                            continue  # overlaps an adopted instance: cannot be created
                        devices.append(self._mig_device(g, p, start, size, common, taints, gi,
                                                        [CounterConsumption(cs, mig_consumption(g, p, start, size, counters))]))
            elif info.mig_enabled and self.mig_strategy != "none":
                for gi in g.instances:
                    prof = g.profile(gi.profile_id)
                    if prof is not None:
                        devices.append(self._shared(self._mig_device(g, prof, gi.start, gi.size, common, taints, gi, [])))
            elif info.mig_enabled:
                log.info("GPU %s has MIG enabled and migStrategy is none: not published", g.name)
            else:
                devices.append(self._shared(Device(g.name, attributes=gpu_attrs, capacity=gpu_cap, taints=taints,
                                                   data=gpu_data)))
            res.devices.extend(devices)

    def _mig_device(self, g: GpuState, p: GiProfile, start: int, size: int, common: dict[str, Any],
                    taints: list[Taint], gi: GpuInstance | None, consumes: list[CounterConsumption]) -> Device:
        name = naming.mig_name(g.info.pci_bus_id, p.name, p.id, start)
        attrs: dict[str, Any] = {"type": "mig", "parentUUID": g.info.uuid, "profile": p.name, **common}
        data: dict[str, Any] = {"kind": "mig", "parent": g.info.uuid, "parentMinor": g.info.minor,
                                "bus": g.info.pci_bus_id, "profile": p.name, "profileId": p.id,
                                "start": start, "size": size, "existing": gi is not None}
        if gi is not None:
            md = next((m for m in g.mig_devices if m.gi_id == gi.id), None)
            data["giId"] = gi.id
            if md is not None:
                attrs["uuid"] = md.uuid
                data.update(uuid=md.uuid, ciId=md.ci_id)
        caps = {"multiprocessors": p.multiprocessors, "copyEngines": p.copy_engines, "decoders": p.decoders,
                "encoders": p.encoders, "jpegEngines": p.jpeg_engines, "ofaEngines": p.ofa_engines,
                "memory": p.memory_mib * MIB}
        return Device(name, attributes=attrs, capacity={k: Capacity(v) for k, v in caps.items()},
                      consumes_counters=consumes, taints=taints, data=data)
