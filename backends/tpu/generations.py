"""The TPU generation table and the sub-host shapes each generation supports (docs/tpu.md).

PCI ids and HBM per chip come from Google's own ``tpu-info`` tool
(https://github.com/AI-Hypercomputer/cloud-accelerator-diagnostics/blob/main/tpu_info/tpu_info/device.py);
the non-TPU Google functions from the PCI id registry (https://admin.pci-ids.ucw.cz/read/PC/1ae0),
as the reference driver lists them
(https://github.com/kubernetes-sigs/dra-driver-google-tpu, ``cmd/tpu-dra-kubeletplugin/hardware.go``).
Host sizes and slice shapes: https://cloud.google.com/tpu/docs/v5e, https://cloud.google.com/tpu/docs/v6e,
https://cloud.google.com/tpu/docs/v4, https://cloud.google.com/tpu/docs/v5p.
"""
from __future__ import annotations

from dataclasses import dataclass

GOOGLE_VENDOR = "1ae0"
GIB = 1 << 30

#: Google PCI functions that are not TPU chips (PCI id registry, vendor 1ae0).
NOT_TPU = {"001f": "NVMe controller", "0042": "gVNIC (Compute Engine Virtual Ethernet)",
           "abcd": "Pixel Neural Core (Edge TPU)"}


@dataclass(frozen=True)
class Shape:
    """A group of ``chips`` chips run as one process: ``bounds`` is TPU_CHIPS_PER_PROCESS_BOUNDS
    (x,y,z chips), ``topology`` the name the TPU docs give it (``2x2``, ``2x2x1``)."""

    chips: int
    bounds: tuple[int, int, int]
    topology: str


@dataclass(frozen=True)
class Generation:
    """One supported TPU generation.

    - ``name``: what the docs call it (``v5e``); ``type_prefix``: the accelerator-type prefix of
      the TPU API (``v5litepod`` in ``v5litepod-8``); ``cores_per_chip``: TensorCores a chip
      counts for in that name (``v4-8`` is 4 chips);
    - ``device_id``: PCI device id (vendor 1ae0); ``hbm``: HBM bytes per chip;
    - ``vfio``: chips are bound to vfio-pci and used through ``/dev/vfio/<group>`` (else ``/dev/accelN``);
    - ``host_chips``: chips a TPU VM of this generation can have; ``shapes``: the sub-host shapes
      by chip count, each group of consecutive chip indexes (``1x2`` = chips 0,1 or 2,3 ...).
    """

    name: str
    type_prefix: str
    device_id: str
    hbm: int
    cores_per_chip: int
    vfio: bool
    host_chips: tuple[int, ...]
    shapes: tuple[Shape, ...]

    def shape(self, chips: int) -> Shape | None:
        return next((s for s in self.shapes if s.chips == chips), None)

    def accelerator_type(self, chips: int) -> str:
        """``v5litepod-4`` for 4 v5e chips, ``v4-8`` for 4 v4 chips (TPU API naming)."""
        return f"{self.type_prefix}-{chips * self.cores_per_chip}"


# 2D torus generations (v5e, v6e): 1/4/8-chip VMs; chips 0-3 and 4-7 of an 8-chip VM are the two
# NUMA partitions (v5e docs, "VM types"). 3D generations (v4, v5p): 4 chips per host, 2x2x1.
_SHAPES_2D = (Shape(1, (1, 1, 1), "1x1"), Shape(2, (1, 2, 1), "1x2"), Shape(4, (2, 2, 1), "2x2"),
              Shape(8, (2, 4, 1), "2x4"))
_SHAPES_3D = (Shape(1, (1, 1, 1), "1x1x1"), Shape(2, (1, 2, 1), "1x2x1"), Shape(4, (2, 2, 1), "2x2x1"))

GENERATIONS: dict[str, Generation] = {g.device_id: g for g in (
    Generation("v4", "v4", "005e", 32 * GIB, 2, False, (4,), _SHAPES_3D),
    Generation("v5e", "v5litepod", "0063", 16 * GIB, 1, True, (1, 4, 8), _SHAPES_2D),
    Generation("v5p", "v5p", "0062", 95 * GIB, 2, True, (4,), _SHAPES_3D),
    Generation("v6e", "v6e", "006f", 32 * GIB, 1, True, (1, 4, 8), _SHAPES_2D),
)}

#: Recognised but not supported by this backend: (device id, subsystem device id or None) → name.
UNSUPPORTED = {("0027", "004e"): "v2", ("0027", "004f"): "v3", ("0076", None): "TPU7x (Ironwood)"}


def unsupported_name(device: str, subsystem: str | None) -> str:
    """The generation of a recognised but unsupported chip, or ``unknown (device id 0x....)``."""
    return UNSUPPORTED.get((device, subsystem)) or UNSUPPORTED.get((device, None)) or \
        f"unknown generation (device id 0x{device})"


def generation_from_accelerator(value: str) -> str | None:
    """The generation named by an accelerator type or label: ``v5litepod-8``, ``v5e-4``,
    ``tpu-v5-lite-podslice``, ``tpu-v6e-slice``, ``v4-8``, ``tpu-v4-podslice``, ``v5p-8`` → ``v5e`` /
    ``v6e`` / ``v4`` / ``v5p``; ``tpu7x`` and others → their own text (unsupported); None when empty."""
    v = value.strip().lower()
    if not v:
        return None
    v = v.removeprefix("tpu-")
    if v.startswith(("v5litepod", "v5lite", "v5-lite", "v5e")):
        return "v5e"
    for name in ("v5p", "v6e", "v4"):
        if v.startswith(name):
            return name
    return v
