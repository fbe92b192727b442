"""The real NVML adapter (pynvml, loaded from the driver root) and the choice real vs fake.

NVML cannot be pointed at a directory tree, so tests and demos select the fake NVML with the
``nvml`` option; the real one loads ``libnvidia-ml.so.1`` found under ``driverRoot`` (like the
NVIDIA driver's ``root.go``) and hands it to pynvml before ``nvmlInit``.
"""
from __future__ import annotations

import ctypes
import json
import logging
from pathlib import Path
from typing import Any, Callable

from . import nvml_api as api
from .nvml_api import (ComputeInstance, Event, GiProfile, GpuInfo, GpuInstance, MigDevice, Nvml, NvmlError,
                       SystemInfo)

log = logging.getLogger(__name__)

#: Where driver libraries live under a driver root (searched in this order).
LIB_DIRS = ["usr/lib64", "usr/lib/x86_64-linux-gnu", "usr/lib/aarch64-linux-gnu", "lib64",
            "lib/x86_64-linux-gnu", "lib/aarch64-linux-gnu", "usr/lib", "lib"]

_BRANDS = {0: "Unknown", 1: "Quadro", 2: "Tesla", 3: "NVS", 4: "Grid", 5: "GeForce", 6: "Titan",
           7: "NvidiaVApps", 8: "NvidiaVPC", 9: "NvidiaVCS", 10: "NvidiaVWS", 11: "NvidiaCloudGaming",
           12: "QuadroRTX", 13: "NvidiaRTX", 14: "Nvidia", 15: "GeForceRTX", 16: "TitanRTX"}
_ARCHS = {2: "Kepler", 3: "Maxwell", 4: "Pascal", 5: "Volta", 6: "Turing", 7: "Ampere", 8: "Ada Lovelace",
          9: "Hopper", 10: "Blackwell", 13: "Rubin"}


def find_library(driver_root: str | Path, name: str = "libnvidia-ml.so.1") -> Path | None:
    root = Path(driver_root)
    for d in LIB_DIRS:
        p = root / d / name
        if p.exists():
            return p
    return None


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class PynvmlSource:
    """Implements :class:`~dra_backends.nvidia.nvml_api.Nvml` with pynvml."""

    def __init__(self, library: str | Path | None) -> None:
        self.library = Path(library) if library else None
        import pynvml  # nvidia-ml-py
        self.n = pynvml
        self._profiles: dict[str, list[GiProfile]] = {}

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except self.n.NVMLError as exc:
            raise NvmlError(int(exc.value), fn.__name__) from None

    def _h(self, uuid: str) -> Any:
        return self._call(self.n.nvmlDeviceGetHandleByUUID, uuid)

    def init(self) -> None:
        n = self.n
        if self.library is not None:
            with n.libLoadLock:
                if n.nvmlLib is None:
                    try:
                        n.nvmlLib = ctypes.CDLL(str(self.library))
                    except OSError as exc:
                        raise NvmlError(api.ERROR_LIBRARY_NOT_FOUND, f"loading {self.library}: {exc}") from None
        self._call(n.nvmlInitWithFlags, n.NVML_INIT_FLAG_NO_GPUS)

    def shutdown(self) -> None:
        try:
            self.n.nvmlShutdown()
        except self.n.NVMLError:
            pass

    def system(self) -> SystemInfo:
        n = self.n
        info = SystemInfo(_s(self._call(n.nvmlSystemGetDriverVersion)),
                          int(self._call(n.nvmlSystemGetCudaDriverVersion)))
        for i in range(self._call(n.nvmlDeviceGetCount)):
            try:
                info.gpus.append(self._gpu_info(self._call(n.nvmlDeviceGetHandleByIndex, i)))
            except NvmlError as exc:  # a GPU fell off the bus: skip it, keep the others
                log.warning("skipping GPU at NVML index %d: %s", i, exc)
        return info

    def _gpu_info(self, h: Any) -> GpuInfo:
        n = self.n
        try:
            mem: int | None = int(self._call(n.nvmlDeviceGetMemoryInfo, h).total)
        except NvmlError as exc:
            if exc.code != api.ERROR_NOT_SUPPORTED:
                raise
            mem = None
        try:
            cur, pending = self._call(n.nvmlDeviceGetMigMode, h)
            capable = True
        except NvmlError:
            cur = pending = 0
            capable = False
        try:
            arch = _ARCHS.get(int(self._call(n.nvmlDeviceGetArchitecture, h)), "Unknown")
        except NvmlError:
            arch = "Unknown"
        major, minor = self._call(n.nvmlDeviceGetCudaComputeCapability, h)
        return GpuInfo(
            uuid=_s(self._call(n.nvmlDeviceGetUUID, h)),
            minor=int(self._call(n.nvmlDeviceGetMinorNumber, h)),
            name=_s(self._call(n.nvmlDeviceGetName, h)),
            brand=_BRANDS.get(int(self._call(n.nvmlDeviceGetBrand, h)), "Unknown"),
            architecture=arch,
            cuda_compute_capability=(int(major), int(minor)),
            memory_bytes=mem,
            pci_bus_id=api.normalize_bus_id(_s(self._call(n.nvmlDeviceGetPciInfo, h).busId)),
            mig_capable=capable, mig_enabled=cur == 1, mig_pending=pending == 1)

    def gi_profiles(self, uuid: str) -> list[GiProfile]:
        n = self.n
        h = self._h(uuid)
        out = []
        for enum in range(n.NVML_GPU_INSTANCE_PROFILE_COUNT):
            try:
                info = self._call(n.nvmlDeviceGetGpuInstanceProfileInfo, h, enum)
            except NvmlError as exc:
                if exc.code in (api.ERROR_NOT_SUPPORTED, api.ERROR_INVALID_ARGUMENT):
                    continue
                raise
            arr = (n.c_nvmlGpuInstancePlacement_t * 16)()
            count = ctypes.c_uint(16)
            self._call(n.nvmlDeviceGetGpuInstancePossiblePlacements, h, info.id, arr, ctypes.byref(count))
            out.append(GiProfile(
                enum=enum, id=int(info.id), name=api.profile_short_name(_s(info.name)),
                slice_count=int(info.sliceCount), instance_count=int(info.instanceCount),
                multiprocessors=int(info.multiprocessorCount), copy_engines=int(info.copyEngineCount),
                decoders=int(info.decoderCount), encoders=int(info.encoderCount), jpeg_engines=int(info.jpegCount),
                ofa_engines=int(info.ofaCount), memory_mib=int(info.memorySizeMB),
                placements=tuple((int(arr[k].start), int(arr[k].size)) for k in range(count.value))))
        self._profiles[uuid] = out
        return out

    def _profiles_of(self, uuid: str) -> list[GiProfile]:
        return self._profiles.get(uuid) or self.gi_profiles(uuid)

    def set_mig_mode(self, uuid: str, enabled: bool) -> None:
        h = self._h(uuid)
        self._call(self.n.nvmlDeviceSetMigMode, h, 1 if enabled else 0)

    def gpu_instances(self, uuid: str) -> list[GpuInstance]:
        n = self.n
        h = self._h(uuid)
        out = []
        for p in self._profiles_of(uuid):
            arr = (n.c_nvmlGpuInstance_t * max(p.instance_count, 1))()
            count = ctypes.c_uint(0)
            self._call(n.nvmlDeviceGetGpuInstances, h, p.id, arr, ctypes.byref(count))
            for k in range(count.value):
                info = self._call(n.nvmlGpuInstanceGetInfo, arr[k])
                out.append(GpuInstance(int(info.id), int(info.profileId), int(info.placement.start), int(info.placement.size)))
        return sorted(out, key=lambda g: g.id)

    def _gi_handle(self, uuid: str, gi_id: int) -> Any:
        return self._call(self.n.nvmlDeviceGetGpuInstanceById, self._h(uuid), gi_id)

    def _ci_profiles(self, gih: Any) -> list[Any]:
        n = self.n
        out = []
        for enum in range(n.NVML_COMPUTE_INSTANCE_PROFILE_COUNT):
            try:
                out.append(self._call(n.nvmlGpuInstanceGetComputeInstanceProfileInfo, gih, enum,
                                      n.NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED))
            except NvmlError as exc:
                if exc.code in (api.ERROR_NOT_SUPPORTED, api.ERROR_INVALID_ARGUMENT):
                    continue
                raise
        return out

    def compute_instances(self, uuid: str, gi_id: int) -> list[ComputeInstance]:
        n = self.n
        gih = self._gi_handle(uuid, gi_id)
        out = []
        for info in self._ci_profiles(gih):
            arr = (n.c_nvmlComputeInstance_t * max(int(info.instanceCount), 1))()
            count = ctypes.c_uint(0)
            self._call(n.nvmlGpuInstanceGetComputeInstances, gih, info.id, arr, ctypes.byref(count))
            for k in range(count.value):
                ci = self._call(n.nvmlComputeInstanceGetInfo, arr[k])
                out.append(ComputeInstance(int(ci.id), int(ci.profileId)))
        return sorted(out, key=lambda c: c.id)

    def create_gpu_instance(self, uuid: str, profile_id: int, start: int) -> GpuInstance:
        n = self.n
        prof = next((p for p in self._profiles_of(uuid) if p.id == profile_id), None)
        size = next((sz for st, sz in (prof.placements if prof else ()) if st == start), None)
        if size is None:
            raise NvmlError(api.ERROR_INVALID_ARGUMENT, f"create_gpu_instance(profile {profile_id}, start {start})")
        placement = n.c_nvmlGpuInstancePlacement_t()
        placement.start, placement.size = start, size
        gih = self._call(n.nvmlDeviceCreateGpuInstanceWithPlacement, self._h(uuid), profile_id, ctypes.byref(placement))
        info = self._call(n.nvmlGpuInstanceGetInfo, gih)
        return GpuInstance(int(info.id), int(info.profileId), int(info.placement.start), int(info.placement.size))

    def create_compute_instance(self, uuid: str, gi_id: int) -> ComputeInstance:
        n = self.n
        gih = self._gi_handle(uuid, gi_id)
        gi = self._call(n.nvmlGpuInstanceGetInfo, gih)
        prof = next(p for p in self._profiles_of(uuid) if p.id == gi.profileId)
        ci_info = next((c for c in self._ci_profiles(gih) if int(c.sliceCount) == prof.slice_count), None)
        if ci_info is None:
            raise NvmlError(api.ERROR_NOT_SUPPORTED, f"no compute instance profile spans GI {gi_id}")
        cih = self._call(n.nvmlGpuInstanceCreateComputeInstance, gih, ci_info.id)
        ci = self._call(n.nvmlComputeInstanceGetInfo, cih)
        return ComputeInstance(int(ci.id), int(ci.profileId))

    def destroy_compute_instance(self, uuid: str, gi_id: int, ci_id: int) -> None:
        n = self.n
        cih = self._call(n.nvmlGpuInstanceGetComputeInstanceById, self._gi_handle(uuid, gi_id), ci_id)
        self._call(n.nvmlComputeInstanceDestroy, cih)

    def destroy_gpu_instance(self, uuid: str, gi_id: int) -> None:
        self._call(self.n.nvmlGpuInstanceDestroy, self._gi_handle(uuid, gi_id))

    def mig_devices(self, uuid: str) -> list[MigDevice]:
        n = self.n
        h = self._h(uuid)
        out = []
        for i in range(self._call(n.nvmlDeviceGetMaxMigDeviceCount, h)):
            try:
                mh = self._call(n.nvmlDeviceGetMigDeviceHandleByIndex, h, i)
            except NvmlError as exc:
                if exc.code == api.ERROR_NOT_FOUND:
                    continue
                raise
            try:
                mem: int | None = int(self._call(n.nvmlDeviceGetMemoryInfo, mh).total)
            except NvmlError:
                mem = None
            out.append(MigDevice(_s(self._call(n.nvmlDeviceGetUUID, mh)), int(self._call(n.nvmlDeviceGetGpuInstanceId, mh)),
                                 int(self._call(n.nvmlDeviceGetComputeInstanceId, mh)), mem))
        return out

    def gpu_responsive(self, uuid: str) -> bool:
        try:
            self._call(self.n.nvmlDeviceGetMinorNumber, self._h(uuid))
            return True
        except NvmlError:
            return False

    def event_set(self) -> object:
        return self._call(self.n.nvmlEventSetCreate)

    def register_events(self, event_set: object, uuid: str, mask: int) -> int:
        h = self._h(uuid)
        m = mask & int(self._call(self.n.nvmlDeviceGetSupportedEventTypes, h))
        if not m:
            raise NvmlError(api.ERROR_NOT_SUPPORTED, "nvmlDeviceGetSupportedEventTypes")
        self._call(self.n.nvmlDeviceRegisterEvents, h, m, event_set)
        return m

    def wait_event(self, event_set: object, timeout_ms: int) -> Event | None:
        n = self.n
        try:
            data = self._call(n.nvmlEventSetWait_v2, event_set, timeout_ms)
        except NvmlError as exc:
            if exc.code == api.ERROR_TIMEOUT:
                return None
            if exc.code == api.ERROR_GPU_IS_LOST:
                return Event("gpu-lost")
            raise
        try:
            uuid = _s(self._call(n.nvmlDeviceGetUUID, data.device))
        except NvmlError:
            return Event("gpu-lost")
        et = int(data.eventType)
        kind = ("xid" if et & api.EVENT_XID_CRITICAL else "ecc-double" if et & api.EVENT_DOUBLE_BIT_ECC
                else "ecc-single" if et & api.EVENT_SINGLE_BIT_ECC else f"event-0x{et:x}")
        return Event(kind, uuid, int(data.eventData), int(data.gpuInstanceId), int(data.computeInstanceId))

    def free_event_set(self, event_set: object) -> None:
        try:
            self.n.nvmlEventSetFree(event_set)
        except self.n.NVMLError:
            pass


def load_host_spec(ref: str, host_root: Path) -> dict[str, Any]:
    """``fake`` → ``<hostRoot>/nvml.json``; ``fake:<preset>``; ``fake:<path to JSON>``."""
    from .fake.presets import PRESETS
    what = ref.partition(":")[2]
    if not what:
        path = host_root / "nvml.json"
    elif what in PRESETS:
        return json.loads(json.dumps(PRESETS[what]))
    else:
        path = Path(what)
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        raise ValueError(f"nvml: cannot read fake host description {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise ValueError(f"nvml: {path} is not valid JSON: {exc}") from None


def open_nvml(nvml: str, driver_root: Path, host_root: Path, state_dir: Path) -> Nvml:
    """Build the adapter the ``nvml`` option names (not yet initialised)."""
    if nvml == "real":
        lib = find_library(driver_root)
        if lib is None:
            raise ValueError(f"driverRoot: libnvidia-ml.so.1 not found under {driver_root} "
                             f"(searched {', '.join(LIB_DIRS)}); is the NVIDIA driver installed there?")
        return PynvmlSource(lib)
    if nvml == "fake" or nvml.startswith("fake:"):
        from .fake.nvml import FakeNvml
        spec = load_host_spec(nvml, host_root)
        return FakeNvml(spec, state_path=state_dir / "fake-nvml" / "state.json",
                        inject_dir=state_dir / "fake-nvml" / "inject", host_root=host_root)
    raise ValueError(f"nvml: expected 'real', 'fake', 'fake:<preset>' or 'fake:<file.json>', got {nvml!r}")


