"""Helpers every PCI backend needs: walk and read PCI functions under the host root, standard
attributes, device names, character-device numbers for CDI, driver rebinding journaled in the
checkpoint, and udev hot-plug. See docs/pci.md."""
from .devnodes import char_device_node, char_majors, char_numbers
from .events import HotplugWatcher, PyudevSource, watch_hotplug
from .names import (PCI_BUS_ID, PCIE_ROOT, device_name, is_standard_bdf, normalize_bdf,
                    parse_device_name)
from .rebind import RebindError, bind_driver, journal_key, restore, restore_journal
from .sysfs import PciFunction, pcie_root, walk

__all__ = [
    "PCI_BUS_ID", "PCIE_ROOT", "HotplugWatcher", "PciFunction", "PyudevSource", "RebindError",
    "bind_driver", "char_device_node", "char_majors", "char_numbers", "device_name",
    "is_standard_bdf", "journal_key", "normalize_bdf", "parse_device_name", "pcie_root",
    "restore", "restore_journal", "walk", "watch_hotplug",
]
