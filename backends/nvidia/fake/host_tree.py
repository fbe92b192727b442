"""Write a fake host tree (/sys, /dev, /proc, driver files) for a host description.

``python -m dra_backends.nvidia.fake.host_tree dgx-h100 examples/hosts/dgx-h100`` regenerates the
sample host. Device nodes are regular files (their majors come from the tree's ``proc/devices``);
/sys/bus/pci/devices entries are relative symlinks into /sys/devices like on a real node (written
with :class:`dra_framework.testing.hosttree.HostTree`).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from dra_framework.testing.hosttree import HostTree

from ..mig_tables import MODELS, gi_id_for_placement, mig_cap_minor

#: Driver files every host gets (under the driver root, relative paths; ``{v}`` = driver version).
DRIVER_LIBS = ["libcuda.so", "libnvidia-ml.so", "libnvidia-ptxjitcompiler.so", "libnvidia-nvvm.so",
               "libnvidia-cfg.so", "libnvidia-opencl.so", "libcudadebugger.so", "libnvidia-gpucomp.so",
               "libnvidia-allocator.so"]
DRIVER_BINS = ["nvidia-smi", "nvidia-debugdump", "nvidia-persistenced", "nvidia-cuda-mps-control",
               "nvidia-cuda-mps-server"]
LIB_DIR = "usr/lib/x86_64-linux-gnu"
#: Dynamic character majors of the NVIDIA modules on the sample hosts (the kernel hands dynamic
#: majors out from 254 down to 234, then from 511 down once those are taken).
UVM_MAJOR, CAPS_MAJOR = 510, 511
#: IOMMU group of the i-th GPU when the host description names none (illustrative numbers).
IOMMU_GROUP_BASE = 40
#: ``/proc/devices`` of a DGX H100 running Ubuntu 22.04 (kernel 5.15) with the 550 driver, in the
#: kernel's format (``"%3d %s\n"`` per entry, sorted by major; a blank line between sections).
PROC_DEVICES = f"""Character devices:
  1 mem
  4 /dev/vc/0
  4 tty
  4 ttyS
  5 /dev/tty
  5 /dev/console
  5 /dev/ptmx
  5 ttyprintk
  7 vcs
 10 misc
 13 input
 21 sg
 29 fb
 89 i2c
 99 ppdev
108 ppp
128 ptm
136 pts
180 usb
189 usb_device
195 nvidia-frontend
202 cpu/msr
203 cpu/cpuid
226 drm
231 infiniband_mad
231 infiniband_verbs
234 ipmidev
235 mei
236 aux
237 cec
238 lirc
239 hidraw
240 nvme-generic
241 nvme
242 bsg
243 watchdog
244 ptp
245 pps
246 rtc
247 dma_heap
248 dax
249 dimmctl
250 ndctl
251 tpm
252 gpiochip
253 tpmrm
254 ttyDBC
507 vfio
508 nvidia-nvswitch
509 nvidia-nvlink
{UVM_MAJOR} nvidia-uvm
{CAPS_MAJOR} nvidia-caps

Block devices:
  7 loop
  8 sd
  9 md
 11 sr
 65 sd
 66 sd
 67 sd
 68 sd
 69 sd
 70 sd
 71 sd
128 sd
129 sd
130 sd
131 sd
132 sd
133 sd
134 sd
135 sd
253 device-mapper
254 mdp
259 blkext
"""


def write_host_tree(root: str | Path, spec: dict[str, Any], driver_root: str | Path | None = None) -> Path:
    """Create the tree under ``root`` (driver files under ``driver_root``, default ``root``) and
    write ``root/nvml.json``. Returns ``root``."""
    root = Path(root)
    droot = Path(driver_root) if driver_root else root
    host, drv = HostTree(root), HostTree(droot)
    ver = spec.get("driverVersion", "550.54.15")
    host.file("nvml.json", json.dumps(spec, indent=2) + "\n")
    for name in ("nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset"):
        host.file(f"dev/{name}")
    host.file("dev/nvidia-caps/nvidia-cap1")
    host.file("dev/nvidia-caps/nvidia-cap2")
    caps = "proc/driver/nvidia/capabilities"
    host.file(f"{caps}/mig/config", "DeviceFileMinor: 1\nDeviceFileMode: 256\nDeviceFileModify: 1\n")
    host.file(f"{caps}/mig/monitor", "DeviceFileMinor: 2\nDeviceFileMode: 292\nDeviceFileModify: 1\n")
    host.file("proc/devices", PROC_DEVICES)
    host.file("proc/driver/nvidia/version",
           f"NVRM version: NVIDIA UNIX x86_64 Kernel Module  {ver}  (fake)\nGCC version:  gcc 12\n")
    minors = ["config 1", "monitor 2"]
    host.pci_driver("vfio-pci")
    host.char_device("dev/vfio/vfio", 10, 196)  # the VFIO container node (misc 10:196)
    for i, g in enumerate(spec["gpus"]):
        bdf = g["pciBusId"].lower()
        minor = int(g["minor"])
        model = MODELS[g["model"]]
        port = f"{bdf[:5]}{g['pcieRoot'][-2:]}:01.0"
        # class 0302: 3D controller (SXM boards); bound to nvidia, one IOMMU group per GPU
        host.pci_function(bdf, parent=f"{g['pcieRoot']}/{port}", vendor="10de",
                          device=f"{model.pci_device_id >> 16:04x}", class_code=g.get("pciClass", "030200"),
                          driver="nvidia", numa_node=int(g.get("numaNode", -1)),
                          iommu_group=int(g.get("iommuGroup", IOMMU_GROUP_BASE + i)))
        host.file(f"dev/nvidia{minor}")
        host.file(f"proc/driver/nvidia/gpus/{bdf}/information",
               f"Model: \t\t {model.name}\nDevice Minor: \t {minor}\nBus Location: \t {bdf}\n")
        for gi in range(15):
            minors.append(f"gpu{minor}/gi{gi}/access {mig_cap_minor(minor, gi)}")
            minors += [f"gpu{minor}/gi{gi}/ci{ci}/access {mig_cap_minor(minor, gi, ci)}" for ci in range(8)]
        for inst in g.get("migInstances", []):
            prof = next(p for p in model.profiles if p.id == inst["profileId"])
            size = next(sz for st, sz in prof.placements if st == inst["start"])
            gi = gi_id_for_placement(inst["start"], size)
            gdir = f"{caps}/gpu{minor}/mig/gi{gi}"
            host.file(f"{gdir}/access", f"DeviceFileMinor: {mig_cap_minor(minor, gi)}\nDeviceFileMode: 292\n")
            host.file(f"{gdir}/ci0/access", f"DeviceFileMinor: {mig_cap_minor(minor, gi, 0)}\nDeviceFileMode: 292\n")
    host.file("proc/driver/nvidia-caps/mig-minors", "\n".join(minors) + "\n")
    for lib in DRIVER_LIBS:
        drv.file(f"{LIB_DIR}/{lib}.{ver}", f"fake {lib} {ver}\n")
        drv.symlink(f"{LIB_DIR}/{lib}.1", f"{lib}.{ver}")
    for b in DRIVER_BINS:
        drv.file(f"usr/bin/{b}", "#!/bin/sh\necho fake\n")
    drv.file(f"lib/firmware/nvidia/{ver}/gsp_ga10x.bin", "fake firmware\n")
    drv.file("run/nvidia-persistenced/socket")
    return root


def main(argv: list[str]) -> int:
    from .presets import PRESETS
    if len(argv) != 2 or argv[0] not in PRESETS:
        print(f"usage: host_tree <{'|'.join(PRESETS)}> <dir>", file=sys.stderr)
        return 2
    write_host_tree(argv[1], PRESETS[argv[0]])
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
