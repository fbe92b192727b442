"""Writes the TPU sample hosts (see each host's README for where every value comes from):
``python examples/hosts/tpu_hosts.py examples/hosts`` writes ``tpu-v5e-8``, ``tpu-v4-4`` and
``tpu-v6e-4`` there; ``build(name, root)`` writes one.

- ``tpu-v5e-8``: a ``ct5lp-hightpu-8t`` TPU VM, 8 v5e chips (1ae0:0063) on vfio-pci, topology
  2x4 from ``/etc/tpu/tpu-env``; chips 0-3 on NUMA node 0, 4-7 on node 1.
- ``tpu-v4-4``: a ``v4-8`` TPU VM, 4 v4 chips (1ae0:005e) as ``/dev/accel0..3``; no tpu-env
  file: the topology comes from the Node's GKE labels (examples/configs/tpu-v4-4.yaml).
- ``tpu-v6e-4``: a ``ct6e-standard-4t`` TPU VM, 4 v6e chips (1ae0:006f) on vfio-pci, topology 2x2
  from ``/etc/tpu/tpu-env``.

Each has a gVNIC (1ae0:0042) that must not be taken for a chip, and a small ``/proc`` (pid 1).
"""
from __future__ import annotations

import sys
from pathlib import Path

from dra_framework.testing.hosttree import HostTree

#: Chips sit on the root bus from slot 4 on, class ff00 (lspci of a TPU VM: ``00:04.0 Unassigned
#: class [ff00]: Google, Inc. Device 0027`` ... ``00:07.0``).
CHIP_SLOTS = [f"0000:00:{slot:02x}.0" for slot in range(4, 12)]
GVNIC = "0000:00:03.0"
#: /dev/vfio/<group> major on a TPU VM (``crw-rw-rw- 239, 0 /dev/vfio/0``), the VFIO container 10:196.
VFIO_MAJOR = 239
#: Not from a real host: the /dev/accelN major of the v4 driver (devices.txt's local/experimental range).
ACCEL_MAJOR = 120

TPU_ENV = {
    "tpu-v5e-8": {"ACCELERATOR_TYPE": "v5litepod-8", "TOPOLOGY": "2x4",
                  "CHIPS_PER_HOST_BOUNDS": "2,4,1", "HOST_BOUNDS": "1,1,1", "WORKER_ID": "0",
                  "TPU_CHIPS_PER_PROCESS_BOUNDS": "2,4,1", "TPU_PROCESS_BOUNDS": "1,1,1", "WRAP": "false,false,false", "ALT": "false"},
    "tpu-v6e-4": {"ACCELERATOR_TYPE": "v6e-4", "TOPOLOGY": "2x2", "CHIPS_PER_HOST_BOUNDS": "2,2,1",
                  "HOST_BOUNDS": "1,1,1", "WORKER_ID": "0", "TPU_CHIPS_PER_PROCESS_BOUNDS": "2,2,1",
                  "TPU_PROCESS_BOUNDS": "1,1,1", "WRAP": "false,false,false", "ALT": "false"},
}
#: name → (PCI device id, chips, vfio, NUMA node of chip i)
HOSTS = {
    "tpu-v5e-8": ("0063", 8, True, lambda i: 0 if i < 4 else 1),
    "tpu-v4-4": ("005e", 4, False, lambda i: 0),
    "tpu-v6e-4": ("006f", 4, True, lambda i: 0),
}


def tpu_env_text(values: dict[str, str]) -> str:
    """The runtime's format: ``KEY: 'value'`` lines, sorted."""
    return "".join(f"{k}: '{v}'\n" for k, v in sorted(values.items()))


def build(name: str, root: str | Path, tpu_env: dict[str, str] | None = None) -> Path:
    """Write host ``name`` under ``root``; ``tpu_env`` replaces its tpu-env values (tests)."""
    device, chips, vfio, numa = HOSTS[name]
    t = HostTree(root)
    t.pci_function(GVNIC, parent="pci0000:00", vendor="1ae0", device="0042", class_code="020000",
                   driver="gve", numa_node=0)
    for i, bdf in enumerate(CHIP_SLOTS[:chips]):
        t.pci_function(bdf, parent="pci0000:00", vendor="1ae0", device=device, class_code="ff0000",
                       driver="vfio-pci" if vfio else None, numa_node=numa(i), iommu_group=i if vfio else None)
        if vfio:
            t.char_device(f"dev/vfio/{i}", VFIO_MAJOR, i)
        else:
            # The class device's "dev" file (major:minor), as in sysfs; it also keeps the directory
            # in git, which drops empty directories (a clean clone would lack them).
            t.file(f"sys/devices/pci0000:00/{bdf}/accel/accel{i}/dev", f"{ACCEL_MAJOR}:{i}\n")
            t.rel_symlink(f"sys/class/accel/accel{i}", f"sys/devices/pci0000:00/{bdf}/accel/accel{i}")
            t.char_device(f"dev/accel{i}", ACCEL_MAJOR, i)
    if vfio:
        t.pci_driver("vfio-pci", module="vfio_pci")
        t.char_device("dev/vfio/vfio", 10, 196)
        t.proc_devices([(10, "misc"), (VFIO_MAJOR, "vfio")])
    else:
        t.proc_devices([(10, "misc"), (ACCEL_MAJOR, "accel")])
    env = tpu_env if tpu_env is not None else TPU_ENV.get(name)
    if env is not None:
        t.file("etc/tpu/tpu-env", tpu_env_text(env))
    t.file("proc/1/comm", "systemd\n")
    t.symlink("proc/1/fd/0", "/dev/null")
    return t.root


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: tpu_hosts.py <dir>  (writes tpu-v5e-8, tpu-v4-4, tpu-v6e-4 there)", file=sys.stderr)
        raise SystemExit(2)
    for host in HOSTS:
        build(host, Path(sys.argv[1]) / host)
