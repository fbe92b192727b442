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

Paths under the driver root are written as the host sees them: the edits are built with the
plugin's view (``driverRoot``) and mapped to ``hostDriverRoot`` with the CDI module's host-root
transform (:func:`dra_framework.cdi.apply_host_root`).
"""
from __future__ import annotations

import re
from pathlib import Path

from dra_framework.cdi.edits import ContainerEdits, DeviceNode, Hook, Mount
from dra_framework.cdi.hostroot import apply_host_root

from .nvml_source import LIB_DIRS

DRIVER_LIBS = ["libcuda.so", "libnvidia-ml.so", "libnvidia-ptxjitcompiler.so", "libnvidia-nvvm.so",
               "libnvidia-cfg.so", "libnvidia-opencl.so", "libcudadebugger.so", "libnvidia-gpucomp.so",
               "libnvidia-allocator.so", "libnvidia-pkcs11.so", "libnvidia-pkcs11-openssl3.so"]
DRIVER_BINS = ["nvidia-smi", "nvidia-debugdump", "nvidia-persistenced", "nvidia-cuda-mps-control",
               "nvidia-cuda-mps-server"]
CONTROL_NODES = ["nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset"]
MOUNT_OPTS = ("ro", "nosuid", "nodev", "rbind", "rprivate")
_MINOR_RE = re.compile(r"^DeviceFileMinor:\s*(\d+)", re.M)


class CdiBuilder:
    def __init__(self, host_root: Path, driver_root: Path, host_driver_root: str, hook_path: str | None) -> None:
        self.host_root, self.driver_root = host_root, driver_root
        self.host_driver_root, self.hook_path = host_driver_root, hook_path

    def _host(self, rel: str) -> str:
        """A driver file as the plugin sees it (mapped to the host path by :meth:`common`)."""
        return str(self.driver_root.resolve() / rel)

    def _node(self, path: str, required: bool) -> DeviceNode | None:
        if (self.host_root / path.lstrip("/")).exists():
            return DeviceNode(path=path)
        if required:
            raise RuntimeError(f"device node {path} not found under hostRoot {self.host_root}")
        return None

    def common(self, driver_version: str) -> ContainerEdits:
        nodes = [self._node("/dev/nvidiactl", True)] + [self._node(f"/dev/{n}", False) for n in CONTROL_NODES]
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
        nodes = [self._node(f"/dev/nvidia{parent_minor}", True)]
        for minor in (self.cap_minor(parent_minor, gi), self.cap_minor(parent_minor, gi, ci)):
            nodes.append(DeviceNode(path=f"/dev/nvidia-caps/nvidia-cap{minor}"))
        return ContainerEdits(device_nodes=tuple(nodes))
