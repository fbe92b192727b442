"""Which resource.k8s.io API the server serves, and the limits that apply to it.

Choice (docs/resourceslices.md): the framework publishes ``resource.k8s.io/v1`` only. v1 exists
from Kubernetes 1.34 (DRA GA); a server that does not serve it (1.33 and older, or v1 disabled
with --runtime-config) makes the publisher fail at start-up with ``UnsupportedServerError``.
v1beta1/v1beta2 are not written: their shapes differ (``basic`` wrapper in v1beta1) and the
upstream helper library dropped them for new drivers.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

GROUP = "resource.k8s.io"
VERSION = "v1"
API_VERSION = f"{GROUP}/{VERSION}"


class UnsupportedServerError(RuntimeError):
    """The API server cannot take resource.k8s.io/v1 ResourceSlices."""


@dataclass(frozen=True)
class ServerInfo:
    """What the publisher needs to know about the API server."""

    major: int = 1
    minor: int = 37
    git_version: str = ""
    served_versions: tuple[str, ...] = (VERSION,)

    @classmethod
    def parse(cls, version_info: dict, served_versions: tuple[str, ...]) -> "ServerInfo":
        """Build from /version output ({major, minor, gitVersion}); minor may read "35+"."""
        git = str(version_info.get("gitVersion", ""))
        major_s = re.sub(r"\D", "", str(version_info.get("major", "")))
        minor_s = re.sub(r"\D", "", str(version_info.get("minor", "")))
        if not (major_s and minor_s):
            m = re.match(r"v?(\d+)\.(\d+)", git)
            if m:
                major_s, minor_s = m.group(1), m.group(2)
        major = int(major_s) if major_s else 1
        minor = int(minor_s) if minor_s else 37
        return cls(major=major, minor=minor, git_version=git, served_versions=served_versions)


@dataclass(frozen=True)
class Limits:
    """Validation and split limits for one server version
    (docs/resourceslices.md#validation-before-anything-is-written).

    The per-slice device limit is 128; 64 when a slice uses taints or counter consumption (1.35+)
    or list attributes (1.36+). 1.34 servers allow 128 devices in every slice. The splitter uses
    64 for a whole pool as soon as one of its devices uses any of these, on every version, so
    that devices do not move when the server is upgraded.

    The 1.34 rules were checked against kubernetes v1.34.4 ``pkg/apis/resource/validation``:
    ≤4 taints with effect NoSchedule or NoExecute (no ``None``); no limit on counter sets per
    slice or consumption entries per device, but ≤32 counters over all sets of a slice, ≤32
    consumed counters per device and ≤1024 consumed counters per slice; a slice may hold both
    devices and sharedCounters, and a device may only consume counter sets (and counters) defined
    in the ``sharedCounters`` of its own slice.
    """

    minor: int = 37
    max_devices: int = 128
    max_devices_advanced: int = 64
    #: 1.35+: the server lowers the per-slice device limit to ``max_devices_advanced`` when a
    #: device of the slice uses taints or consumesCounters (or list attributes, 1.36+).
    advanced_device_limit: bool = True
    max_taints: int = 16
    taint_effects: tuple[str, ...] = ("NoSchedule", "NoExecute", "None")
    #: 1.35+: a slice carries devices or sharedCounters, never both; counter-set names are
    #: unique in the pool; consumed sets may live in other slices of the pool.
    separate_counter_slices: bool = True
    max_counter_sets_per_slice: int | None = 8
    max_consumptions_per_device: int | None = 2
    #: 1.34 only: counters summed over all sets of one slice, consumed counters summed over the
    #: consumption entries of one device, and consumed counters summed over one slice.
    max_counters_per_slice: int | None = None
    max_counters_per_device: int | None = None
    max_device_counters_per_slice: int | None = None
    list_attributes: bool = True
    max_attribute_values: int | None = 48

    @classmethod
    def for_server(cls, info: ServerInfo | None) -> "Limits":
        minor = info.minor if info is not None and info.major == 1 else 37
        if info is not None and info.major > 1:
            minor = 99
        if minor <= 34:
            return cls(minor=minor, advanced_device_limit=False, max_taints=4,
                       taint_effects=("NoSchedule", "NoExecute"),
                       separate_counter_slices=False, max_counter_sets_per_slice=None,
                       max_consumptions_per_device=None, max_counters_per_slice=32,
                       max_counters_per_device=32, max_device_counters_per_slice=1024,
                       list_attributes=False,
                       max_attribute_values=None)
        if minor == 35:
            return cls(minor=minor, list_attributes=False, max_attribute_values=None)
        return cls(minor=minor)


async def discover_server(api) -> ServerInfo:
    """Ask the server (through a ``kubeapi.SliceAPI``) for its version and the served versions of
    resource.k8s.io. Raises UnsupportedServerError when v1 is not served."""
    served = tuple(await api.served_versions(GROUP))
    version = await api.server_version()
    info = ServerInfo.parse(version, served)
    if VERSION not in served:
        raise UnsupportedServerError(
            f"the API server ({info.git_version or 'unknown version'}) does not serve {API_VERSION} "
            f"(served: {', '.join(served) or 'none'}); dra-framework needs Kubernetes 1.34 or newer "
            f"with {API_VERSION} enabled")
    return info
