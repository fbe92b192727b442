"""The public backend API: everything a backend package may import from dra-framework.

A backend imports from here (or from the top-level package, which re-exports this module)
and nothing else of the framework; ``dra_framework.testing`` is for its tests. Every other
module is internal and may change between releases. The guide is docs/backends.md.

What is here, grouped:

- **Hooks**: :data:`hookimpl` marks hook implementations; the hooks are documented in
  :class:`BackendSpec` (methods of a backend instance) and :class:`RegistrySpec` (the module
  function that registers backend types, with a :class:`RegisterBackend` callback).
- **Construction**: :class:`BaseOptions` (subclass it for a backend's options),
  :class:`BackendContext` (driver, node, host root, state dir, rediscovery).
- **Discovery model**: :class:`Inventory`, :class:`Device`, :class:`Capacity`,
  :class:`RequestPolicy`, :class:`ValidRange`, :class:`CounterSet`, :class:`CounterConsumption`,
  :class:`Taint`, :class:`TaintEffect`, :class:`NodeSelection`, :class:`Version`,
  :func:`quantity_value`, :func:`quantity_str`.
- **Prepare model**: :class:`PrepareContext`, :class:`ClaimInfo`, :class:`AllocatedDevice`,
  :class:`OpaqueConfig`, :class:`PrepareResult`, :class:`PreparedDeviceEdits`,
  :class:`DeviceStatus`, :class:`NetworkData`, :class:`StoredClaim`.
- **Container edits (CDI)**: :class:`ContainerEdits`, :class:`DeviceNode`, :class:`Mount`,
  :class:`Hook`, :class:`NetDevice`, :class:`IntelRdt`, :func:`merge_edits`; :class:`CdiPolicy`
  (what a backend's edits may do; ``BaseOptions.default_cdi_policy``, docs/cdi.md).
- **Health**: :class:`Health`, :class:`HealthReport`.
- **Helpers**: :func:`write_state_file`, :func:`write_json_atomic`, :func:`read_json_object`,
  :func:`atomic_write_file` (crash-safe state files; ``write_state_file`` refuses symbolic
  links); :func:`map_host_path`, :func:`apply_host_root` (paths seen under a
  host-root mount → host paths); :func:`device_node`, :func:`device_numbers`,
  :func:`proc_device_majors` (device-node type/major/minor).
- **PCI devices** (docs/pci.md): :class:`PciFunction`, :func:`walk_pci` (functions by
  vendor/device/class, VFs through ``physfn``/``virtfn`` links), :func:`pcie_root`,
  :func:`normalize_bdf`, :func:`is_standard_bdf`, :func:`pci_device_name`,
  :func:`parse_pci_device_name`, :data:`PCI_BUS_ID`, :data:`PCIE_ROOT` (standard attributes);
  :func:`char_device_node` (CDI node numbers via ``/dev/char``); :func:`bind_driver`,
  :func:`restore_driver`, :func:`restore_journal`, :class:`RebindError` (driver rebinding
  journaled in the checkpoint); :func:`watch_hotplug`, :class:`HotplugWatcher` (udev hot-plug →
  rediscovery).
- **Errors**: :class:`DraFrameworkError`, :class:`PluginError`, :class:`HookError`,
  :class:`ConfigError`, :class:`CdiError`, :class:`CdiConflictError`.
"""
from __future__ import annotations

from .backend import BackendContext, BaseOptions, PrepareContext
from .cdi.edits import ContainerEdits, DeviceNode, Hook, IntelRdt, Mount, NetDevice
from .cdi.edits import merge as merge_edits
from .cdi.errors import CdiConflictError, CdiError
from .cdi.hostroot import apply_host_root, map_host_path
from .cdi.policy import CdiPolicy
from .devnodes import device_node, device_numbers, proc_device_majors
from .errors import ConfigError, DraFrameworkError, HookError, PluginError
from .fsutil import atomic_write_file, read_json_object, write_json_atomic, write_state_file
from .hookspecs import BackendSpec, RegisterBackend, RegistrySpec, hookimpl
from .pci import (
    PCI_BUS_ID,
    PCIE_ROOT,
    HotplugWatcher,
    PciFunction,
    RebindError,
    bind_driver,
    char_device_node,
    is_standard_bdf,
    normalize_bdf,
    pcie_root,
    restore_journal,
    watch_hotplug,
)
from .pci import device_name as pci_device_name
from .pci import parse_device_name as parse_pci_device_name
from .pci import restore as restore_driver
from .pci import walk as walk_pci
from .model import (
    AllocatedDevice,
    AttributeValue,
    Capacity,
    ClaimInfo,
    CounterConsumption,
    CounterSet,
    Device,
    DeviceStatus,
    Health,
    HealthReport,
    Inventory,
    NetworkData,
    NodeSelection,
    OpaqueConfig,
    PreparedDeviceEdits,
    PrepareResult,
    Quantity,
    RequestPolicy,
    StoredClaim,
    Taint,
    TaintEffect,
    ValidRange,
    Version,
    quantity_str,
    quantity_value,
)

__all__ = [
    # hooks
    "hookimpl", "BackendSpec", "RegistrySpec", "RegisterBackend",
    # construction
    "BaseOptions", "BackendContext",
    # discovery model
    "Inventory", "Device", "Capacity", "RequestPolicy", "ValidRange", "CounterSet", "CounterConsumption",
    "Taint", "TaintEffect", "NodeSelection", "Version", "AttributeValue", "Quantity",
    "quantity_value", "quantity_str",
    # prepare model
    "PrepareContext", "ClaimInfo", "AllocatedDevice", "OpaqueConfig", "PrepareResult",
    "PreparedDeviceEdits", "DeviceStatus", "NetworkData", "StoredClaim",
    # container edits
    "ContainerEdits", "DeviceNode", "Mount", "Hook", "NetDevice", "IntelRdt", "merge_edits", "CdiPolicy",
    # health
    "Health", "HealthReport",
    # helpers
    "write_state_file", "write_json_atomic", "read_json_object", "atomic_write_file", "map_host_path", "apply_host_root",
    "device_node", "device_numbers", "proc_device_majors",
    # PCI devices
    "PciFunction", "walk_pci", "pcie_root", "normalize_bdf", "is_standard_bdf", "pci_device_name",
    "parse_pci_device_name", "PCI_BUS_ID", "PCIE_ROOT", "char_device_node", "bind_driver",
    "restore_driver", "restore_journal", "RebindError", "watch_hotplug", "HotplugWatcher",
    # errors
    "DraFrameworkError", "PluginError", "HookError", "ConfigError", "CdiError", "CdiConflictError",
]
