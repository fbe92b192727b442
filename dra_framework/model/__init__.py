"""The public model backends produce and consume. Conversion to Kubernetes objects and CDI files
lives in the core (``dra_framework.slices``, ``dra_framework.cdi``), never in backends."""
from ..cdi.edits import ContainerEdits, DeviceNode, Hook, Mount, NetDevice
from .attributes import AttributeValue, Quantity, Version, quantity_str, quantity_value
from .claims import (
    AllocatedDevice,
    ClaimInfo,
    DeviceStatus,
    NetworkData,
    PreparedDeviceEdits,
    PrepareResult,
    StoredClaim,
)
from .devices import (
    Capacity,
    CounterConsumption,
    CounterSet,
    Device,
    NodeSelection,
    Pool,
    RequestPolicy,
    Taint,
    TaintEffect,
    ValidRange,
)
from .health import Health, HealthReport
from .inventory import Inventory
from .opaque import OpaqueConfig

__all__ = [
    "AllocatedDevice", "AttributeValue", "Capacity", "ClaimInfo", "ContainerEdits", "CounterConsumption",
    "CounterSet", "Device", "DeviceNode", "DeviceStatus", "Health", "HealthReport", "Hook", "Inventory",
    "Mount", "NetDevice", "NetworkData", "NodeSelection", "OpaqueConfig", "Pool", "PreparedDeviceEdits",
    "PrepareResult", "Quantity", "RequestPolicy", "StoredClaim", "Taint", "TaintEffect", "ValidRange",
    "Version", "quantity_str", "quantity_value",
]
