"""Container edits for NVIDIA devices (what nvcdi generates in the reference driver, reduced to
what a CUDA container needs).

* claim-wide: control nodes (``/dev/nvidiactl`` required; ``nvidia-uvm``, ``nvidia-uvm-tools``,
  ``nvidia-modeset`` when present), the driver's libraries, binaries, GSP firmware and the
  persistenced socket bind-mounted read-only from the driver root, ``NVIDIA_VISIBLE_DEVICES=void``
  (so the NVIDIA runtime does not inject more), optional ``nvidia-cdi-hook`` hooks;
* full GPU: ``/dev/nvidia<minor>``;
* MIG device: the parent's ``/dev/nvidia<minor>`` plus ``/dev/nvidia-caps/nvidia-cap<N>`` for its
  GPU instance and compute instance, minors read from
  ``<hostRoot>/proc/driver/nvidia/capabilities/gpu<P>/mig/gi<G>[/ci<C>]/access``
  (fallback: ``/proc/driver/nvidia-caps/mig-minors``).

Every device node is self-contained (as nvidia-container-toolkit writes its ``nvidia-caps``
nodes): ``type: c`` plus ``major``/``minor``, so a runtime injects it without stat-ing the host
path (the CDI library's ``fillMissingInfo`` stats only when type+major are missing). Majors come
from the "Character devices" section of ``<hostRoot>/proc/devices`` (``nvidia-frontend`` or
``nvidia`` = 195 for ``nvidia<N>``, ``nvidiactl`` (255) and ``nvidia-modeset`` (254);
``nvidia-uvm`` minors 0/1 for ``nvidia-uvm``/``nvidia-uvm-tools``; ``nvidia-caps`` for
``nvidia-caps/nvidia-cap<N>``); when the entry is missing, the node under hostRoot is stat-ed if
it is a real character device; otherwise the node is written with its path only (logged once).

Paths under the driver root are written as the host sees them: the edits are built with the
plugin's view (``driverRoot``) and mapped to ``hostDriverRoot`` with the CDI module's host-root
transform (:func:`dra_framework.cdi.apply_host_root`).
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

from dra_framework.api import ContainerEdits, DeviceNode, Hook, Mount, apply_host_root, device_numbers, proc_device_majors

from .nvml_source import LIB_DIRS

DRIVER_LIBS = ["libcuda.so", "libnvidia-ml.so", "libnvidia-ptxjitcompiler.so", "libnvidia-nvvm.so",
               "libnvidia-cfg.so", "libnvidia-opencl.so", "libcudadebugger.so", "libnvidia-gpucomp.so",
               "libnvidia-allocator.so", "libnvidia-pkcs11.so", "libnvidia-pkcs11-openssl3.so"]
DRIVER_BINS = ["nvidia-smi", "nvidia-debugdump", "nvidia-persistenced", "nvidia-cuda-mps-control",
               "nvidia-cuda-mps-server"]
CONTROL_NODES = ["nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset"]
MOUNT_OPTS = ("ro", "nosuid", "nodev", "rbind", "rprivate")
_MINOR_RE = re.compile(r"^DeviceFileMinor:\s*(\d+)", re.M)
#: ``/proc/devices`` names of the GPU frontend major (195), newest first.
FRONTEND_NAMES = ("nvidia-frontend", "nvidia")
_CAP_RE = re.compile(r"^/dev/nvidia-caps/nvidia-cap(\d+)$")
_GPU_RE = re.compile(r"^/dev/nvidia(\d+)$")


def char_majors(host_root: Path) -> dict[str, int]:
    """The "Character devices:" section of ``<hostRoot>/proc/devices`` as name → major (first
    entry wins for a name listed twice); empty when the file is missing or unreadable."""
    return proc_device_majors(host_root, "c")


def node_numbers(path: str, majors: dict[str, int]) -> tuple[int, int] | None:
    """(major, minor) of an NVIDIA device node path from the /proc/devices majors, or None."""
    def frontend() -> int | None:
        return next((majors[n] for n in FRONTEND_NAMES if n in majors), None)

    fixed = {"/dev/nvidiactl": (None, 255), "/dev/nvidia-modeset": (None, 254),
             "/dev/nvidia-uvm": ("nvidia-uvm", 0), "/dev/nvidia-uvm-tools": ("nvidia-uvm", 1)}
    if path in fixed:
        name, minor = fixed[path]
        major = frontend() if name is None else majors.get(name)
    elif m := _GPU_RE.match(path):
        major, minor = frontend(), int(m.group(1))
    elif m := _CAP_RE.match(path):
        major, minor = majors.get("nvidia-caps"), int(m.group(1))
    else:
        return None
    return None if major is None else (major, minor)


class CdiBuilder:
    def __init__(self, host_root: Path, driver_root: Path, host_driver_root: str, hook_path: str | None,
                 log: logging.Logger | None = None) -> None:
        self.host_root, self.driver_root = host_root, driver_root
        self.host_driver_root, self.hook_path = host_driver_root, hook_path
        self.log = log or logging.getLogger(__name__)
        self._unresolved_logged: set[str] = set()

    def _host(self, rel: str) -> str:
        """A driver file as the plugin sees it (mapped to the host path by :meth:`common`)."""
        return str(self.driver_root.resolve() / rel)

    def _node(self, path: str, required: bool, majors: dict[str, int] | None = None) -> DeviceNode | None:
        if (self.host_root / path.lstrip("/")).exists():
            return self._device_node(path, majors)
        if required:
            raise RuntimeError(f"device node {path} not found under hostRoot {self.host_root}")
        return None

    def _device_node(self, path: str, majors: dict[str, int] | None = None) -> DeviceNode:
        """A self-contained character device node (type, major, minor) when the numbers are known
        (``/proc/devices``, else the host node itself); the path alone otherwise."""
        nums = node_numbers(path, char_majors(self.host_root) if majors is None else majors)
        if nums is None:
            found = device_numbers(path, self.host_root)
            if found is not None and found[0] == "c":
                nums = found[1:]
        if nums is None:
            if path not in self._unresolved_logged:
                self._unresolved_logged.add(path)
                self.log.debug("no major/minor for %s (neither in %s nor a character device there): "
                               "CDI node without type/major/minor", path, self.host_root / "proc/devices")
            return DeviceNode(path=path)
        return DeviceNode(path=path, type="c", major=nums[0], minor=nums[1])

    def common(self, driver_version: str) -> ContainerEdits:
        majors = char_majors(self.host_root)
        nodes = [self._node("/dev/nvidiactl", True, majors)] + [self._node(f"/dev/{n}", False, majors)
                                                                 for n in CONTROL_NODES]
        mounts: list[Mount] = []
        links: list[str] = []
        lib_dirs: list[str] = []
        for lib in DRIVER_LIBS:
            rel = self._find_lib(f"{lib}.{driver_version}")
            if rel is None:
                continue
            mounts.append(Mount(host_path=self._host(rel), container_path="/" + rel, options=MOUNT_OPTS))
            d = str(Path("/" + rel).parent)
            if d not in lib_dirs:
                lib_dirs.append(d)
            soname = f"{d}/{lib}.1"
            if self.hook_path:
                links.append(f"{Path(rel).name}::{soname}")
            else:  # no hook to create the soname symlink: bind the library at the soname too
                mounts.append(Mount(host_path=self._host(rel), container_path=soname, options=MOUNT_OPTS))
        if not any(m.container_path.endswith(f"libcuda.so.{driver_version}") for m in mounts):
            raise RuntimeError(f"libcuda.so.{driver_version} not found under driverRoot {self.driver_root} "
                               f"(searched {', '.join(LIB_DIRS)})")
        for b in DRIVER_BINS:
            for d in ("usr/bin", "bin"):
                if (self.driver_root / d / b).exists():
                    mounts.append(Mount(host_path=self._host(f"{d}/{b}"), container_path=f"/usr/bin/{b}", options=MOUNT_OPTS))
                    break
        fw = self.driver_root / "lib/firmware/nvidia" / driver_version
        if fw.is_dir():
            for f in sorted(fw.glob("*.bin")):
                rel = f"lib/firmware/nvidia/{driver_version}/{f.name}"
                mounts.append(Mount(host_path=self._host(rel), container_path="/" + rel, options=MOUNT_OPTS))
        sock = "run/nvidia-persistenced/socket"
        if (self.driver_root / sock).exists():
            mounts.append(Mount(host_path=self._host(sock), container_path="/" + sock,
                                options=("ro", "nosuid", "nodev", "bind", "noexec")))
        hooks: list[Hook] = []
        if self.hook_path:
            if links:
                args = ["nvidia-cdi-hook", "create-symlinks"]
                for link in links:
                    args += ["--link", link]
                hooks.append(Hook(hook_name="createContainer", path=self.hook_path, args=tuple(args)))
            ld = ["nvidia-cdi-hook", "update-ldcache"]
            for d in lib_dirs:
                ld += ["--folder", d]
            hooks.append(Hook(hook_name="createContainer", path=self.hook_path, args=tuple(ld)))
        # only the driver files live under the driver root: device nodes are host /dev paths and the
        # hook path is a host path already, so they are not mapped
        mapped = apply_host_root(ContainerEdits(mounts=tuple(mounts)),
                                 {str(self.driver_root.resolve()): self.host_driver_root}).mounts
        return ContainerEdits(env={"NVIDIA_VISIBLE_DEVICES": "void"},
                              device_nodes=tuple(n for n in nodes if n is not None),
                              mounts=mapped, hooks=tuple(hooks))

    def _find_lib(self, name: str) -> str | None:
        for d in LIB_DIRS:
            if (self.driver_root / d / name).exists():
                return f"{d}/{name}"
        return None

    def gpu(self, minor: int) -> ContainerEdits:
        return ContainerEdits(device_nodes=(self._node(f"/dev/nvidia{minor}", True),))

    def cap_minor(self, parent_minor: int, gi: int, ci: int | None = None) -> int:
        rel = f"gpu{parent_minor}/mig/gi{gi}" + (f"/ci{ci}" if ci is not None else "") + "/access"
        access = self.host_root / "proc/driver/nvidia/capabilities" / rel
        try:
            m = _MINOR_RE.search(access.read_text())
            if m:
                return int(m.group(1))
        except OSError:
            pass
        key = f"gpu{parent_minor}/gi{gi}" + (f"/ci{ci}" if ci is not None else "") + "/access"
        try:
            for line in (self.host_root / "proc/driver/nvidia-caps/mig-minors").read_text().splitlines():
                parts = line.split()
                if len(parts) == 2 and parts[0] == key:
                    return int(parts[1])
        except OSError:
            pass
        raise RuntimeError(f"MIG capability minor for {key} not found (neither {access} nor "
                           f"/proc/driver/nvidia-caps/mig-minors under hostRoot {self.host_root})")

    def mig(self, parent_minor: int, gi: int, ci: int) -> ContainerEdits:
        majors = char_majors(self.host_root)
        nodes = [self._node(f"/dev/nvidia{parent_minor}", True, majors)]
        for minor in (self.cap_minor(parent_minor, gi), self.cap_minor(parent_minor, gi, ci)):
            nodes.append(self._device_node(f"/dev/nvidia-caps/nvidia-cap{minor}", majors))
        return ContainerEdits(device_nodes=tuple(nodes))
