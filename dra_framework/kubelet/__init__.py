"""Kubelet-facing gRPC layer: registration, DRA node service, device health.

Protocol rules: docs/protocol.md.
"""
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
