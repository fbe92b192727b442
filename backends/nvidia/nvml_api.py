"""The small NVML adapter interface the backend uses, with plain-data results.

Two implementations: :class:`dra_backends.nvidia.nvml_source.PynvmlSource` (really calls pynvml)
and :class:`dra_backends.nvidia.fake.FakeNvml`. Everything is addressed by GPU UUID, never by
NVML index (the index shifts when a GPU falls off the bus). Errors are :class:`NvmlError` with
NVML's numeric return codes (the same values as ``pynvml.NVML_ERROR_*``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence

# NVML return codes (nvml.h / pynvml).
ERROR_UNINITIALIZED = 1
ERROR_INVALID_ARGUMENT = 2
ERROR_NOT_SUPPORTED = 3
ERROR_NO_PERMISSION = 4
ERROR_NOT_FOUND = 6
ERROR_TIMEOUT = 10
ERROR_LIBRARY_NOT_FOUND = 12
ERROR_GPU_IS_LOST = 15
ERROR_RESET_REQUIRED = 16
ERROR_IN_USE = 19
ERROR_INSUFFICIENT_RESOURCES = 23
ERROR_UNKNOWN = 999

_MESSAGES = {
    ERROR_UNINITIALIZED: "Uninitialized",
    ERROR_INVALID_ARGUMENT: "Invalid Argument",
    ERROR_NOT_SUPPORTED: "Not Supported",
    ERROR_NO_PERMISSION: "Insufficient Permissions",
    ERROR_NOT_FOUND: "Not Found",
    ERROR_TIMEOUT: "Timeout",
    ERROR_LIBRARY_NOT_FOUND: "NVML Shared Library Not Found",
    ERROR_GPU_IS_LOST: "GPU is lost",
    ERROR_RESET_REQUIRED: "GPU requires restart",
    ERROR_IN_USE: "In use by another client",
    ERROR_INSUFFICIENT_RESOURCES: "Insufficient Resources",
    ERROR_UNKNOWN: "Unknown Error",
}

# Event type bits (nvmlEventType*).
EVENT_SINGLE_BIT_ECC = 0x1
EVENT_DOUBLE_BIT_ECC = 0x2
EVENT_XID_CRITICAL = 0x8
HEALTH_EVENT_MASK = EVENT_XID_CRITICAL | EVENT_DOUBLE_BIT_ECC | EVENT_SINGLE_BIT_ECC

#: GI/CI id NVML reports for an event on the whole GPU (not a MIG instance).
NO_INSTANCE = 0xFFFFFFFF


class NvmlError(Exception):
    """An NVML call failed; ``code`` is NVML's return code."""

    def __init__(self, code: int, what: str = "") -> None:
        self.code = code
        self.what = what
        msg = _MESSAGES.get(code, f"NVML error {code}")
        super().__init__(f"{what}: {msg}" if what else msg)


@dataclass(frozen=True)
class GpuInfo:
    """A physical GPU as discovery needs it. ``pci_bus_id`` is normalized to the Kubernetes form
    (4-digit domain, lower case: ``0000:1b:00.0``)."""

    uuid: str
    minor: int
    name: str
    brand: str
    architecture: str
    cuda_compute_capability: tuple[int, int]
    memory_bytes: int | None
    pci_bus_id: str
    mig_capable: bool = False
    mig_enabled: bool = False
    mig_pending: bool = False


@dataclass(frozen=True)
class GiProfile:
    """nvmlGpuInstanceProfileInfo_v2 plus the possible placements. ``enum`` is the
    NVML_GPU_INSTANCE_PROFILE_* value used to query it, ``id`` the real profile id NVML returns
    (what ``nvidia-smi mig -cgi`` takes), ``name`` e.g. ``1g.10gb``."""

    enum: int
    id: int
    name: str
    slice_count: int
    instance_count: int
    multiprocessors: int
    copy_engines: int
    decoders: int
    encoders: int
    jpeg_engines: int
    ofa_engines: int
    memory_mib: int
    placements: tuple[tuple[int, int], ...] = ()  # (start, size) in memory slices


@dataclass(frozen=True)
class GpuInstance:
    id: int
    profile_id: int
    start: int
    size: int


@dataclass(frozen=True)
class ComputeInstance:
    id: int
    profile_id: int


@dataclass(frozen=True)
class MigDevice:
    """A MIG device (an existing GI+CI pair) as NVML enumerates it."""

    uuid: str
    gi_id: int
    ci_id: int
    memory_bytes: int | None = None


@dataclass(frozen=True)
class Event:
    """One health event. ``kind``: ``xid``, ``ecc-double``, ``ecc-single`` or ``gpu-lost``
    (``uuid`` empty = every GPU). GI/CI ids are :data:`NO_INSTANCE` for the whole GPU."""

    kind: str
    uuid: str = ""
    data: int = 0
    gi_id: int = NO_INSTANCE
    ci_id: int = NO_INSTANCE


@dataclass
class SystemInfo:
    driver_version: str
    cuda_driver_version: int  # e.g. 12040
    gpus: list[GpuInfo] = field(default_factory=list)


class Nvml(Protocol):
    """What the backend calls. Blocking; the backend runs slow calls in threads."""

    def init(self) -> None: ...
    def shutdown(self) -> None: ...
    def system(self) -> SystemInfo: ...
    def gi_profiles(self, uuid: str) -> list[GiProfile]: ...
    def set_mig_mode(self, uuid: str, enabled: bool) -> None: ...
    def gpu_instances(self, uuid: str) -> list[GpuInstance]: ...
    def compute_instances(self, uuid: str, gi_id: int) -> list[ComputeInstance]: ...
    def create_gpu_instance(self, uuid: str, profile_id: int, start: int) -> GpuInstance: ...
    def create_compute_instance(self, uuid: str, gi_id: int) -> ComputeInstance: ...
    def destroy_compute_instance(self, uuid: str, gi_id: int, ci_id: int) -> None: ...
    def destroy_gpu_instance(self, uuid: str, gi_id: int) -> None: ...
    def mig_devices(self, uuid: str) -> list[MigDevice]: ...
    def gpu_responsive(self, uuid: str) -> bool: ...
    def event_set(self) -> object: ...
    def register_events(self, event_set: object, uuid: str, mask: int) -> int: ...
    def wait_event(self, event_set: object, timeout_ms: int) -> Event | None: ...
    def free_event_set(self, event_set: object) -> None: ...


def normalize_bus_id(bus_id: str) -> str:
    """``00000000:1B:00.0`` → ``0000:1b:00.0`` (the resource.kubernetes.io/pciBusID form)."""
    s = bus_id.strip().lower()
    dom, _, rest = s.partition(":")
    if not rest:
        raise ValueError(f"malformed PCI bus id {bus_id!r}")
    return f"{int(dom, 16):04x}:{rest}"


def profile_short_name(name: str) -> str:
    """NVML v2 profile names read ``MIG 1g.10gb``; return ``1g.10gb``."""
    name = name.strip()
    return name[4:] if name.startswith("MIG ") else name


def full_ci_profile_for(slice_count: int, supported: Sequence[tuple[int, int]]) -> int | None:
    """Pick the CI profile (enum) covering the whole GI: the one whose slice count equals the
    GI's, from ``(enum, slice_count)`` pairs."""
    for enum, sc in supported:
        if sc == slice_count:
            return enum
    return None
