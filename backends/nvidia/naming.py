"""Device names: DNS labels derived from the PCI bus address, parseable back.

* full GPU:    ``gpu-<domain>-<bus>-<dev>-<fn>``            e.g. ``gpu-0000-1b-00-0``
* MIG device:  ``<gpu name>-mig-<profile>-<profileId>-<start>`` e.g. ``gpu-0000-1b-00-0-mig-1g10gb-19-0``
  (profile without dots, ``+`` → ``-``: ``1g.10gb+me`` → ``1g10gb-me``)
* counter set: ``<gpu name>-counters``

Why not the NVML index or the device minor: both are assigned at driver load in enumeration
order, so they shift when a GPU falls off the bus or a node reboots with one GPU missing (NVIDIA
driver issues #427, #563, #930). The PCI address is a property of the slot. Static and dynamic
MIG devices share the scheme, so a claim prepared on one is recognizable on the other, and
rollback can recover (parent, profile id, placement) from the name alone.
"""
from __future__ import annotations

import re

from dra_framework.api import pci_device_name

_GPU = r"gpu-(?P<dom>[0-9a-f]{4})-(?P<bus>[0-9a-f]{2})-(?P<dev>[0-9a-f]{2})-(?P<fn>[0-7])"
_GPU_RE = re.compile(rf"^{_GPU}$")
_MIG_RE = re.compile(rf"^{_GPU}-mig-(?P<profile>[a-z0-9]+(?:-[a-z0-9]+)*?)-(?P<pid>\d+)-(?P<start>\d+)$")


def gpu_name(pci_bus_id: str) -> str:
    return pci_device_name(pci_bus_id, "gpu")


def profile_label(profile: str) -> str:
    """``1g.10gb+me`` → ``1g10gb-me``."""
    return profile.lower().replace(".", "").replace("+", "-")


def mig_name(pci_bus_id: str, profile: str, profile_id: int, start: int) -> str:
    return f"{gpu_name(pci_bus_id)}-mig-{profile_label(profile)}-{profile_id}-{start}"


def counter_set_name(pci_bus_id: str) -> str:
    return f"{gpu_name(pci_bus_id)}-counters"


def parse_gpu_name(name: str) -> str | None:
    """Return the PCI bus id of a full-GPU device name, or None."""
    m = _GPU_RE.match(name)
    return f"{m['dom']}:{m['bus']}:{m['dev']}.{m['fn']}" if m else None


def parse_mig_name(name: str) -> tuple[str, str, int, int] | None:
    """Return ``(pci_bus_id, profile_label, profile_id, start)`` of a MIG device name, or None."""
    m = _MIG_RE.match(name)
    if not m:
        return None
    return f"{m['dom']}:{m['bus']}:{m['dev']}.{m['fn']}", m["profile"], int(m["pid"]), int(m["start"])
