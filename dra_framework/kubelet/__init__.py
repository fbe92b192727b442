"""Kubelet-facing gRPC layer: registration, DRA node service, device health.

Protocol rules: docs/protocol.md. Names are imported on first use (``dra_framework._lazy``).
"""
from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from .health import DeviceHealth, Health, HealthState
    from .server import PluginServer, RegistrationError
    from .servicers import RegistrationStatus
    from .sockets import SocketPaths, socket_paths
    from .types import ClaimRef, DRAEngine, PrepareOutcome, PreparedDevice

__all__ = [
    "ClaimRef", "DRAEngine", "DeviceHealth", "Health", "HealthState", "PluginServer",
    "PrepareOutcome", "PreparedDevice", "RegistrationError", "RegistrationStatus",
    "SocketPaths", "socket_paths",
]

__getattr__, __dir__ = lazy_exports(__name__, {
    ".health": ["DeviceHealth", "Health", "HealthState"],
    ".server": ["PluginServer", "RegistrationError"],
    ".servicers": ["RegistrationStatus"],
    ".sockets": ["SocketPaths", "socket_paths"],
    ".types": ["ClaimRef", "DRAEngine", "PrepareOutcome", "PreparedDevice"],
})
