"""Options of the ``nvidia`` backend (``drivers[].backends[].options`` in the config)."""
from __future__ import annotations

import posixpath
from typing import Literal

from pydantic import Field

from dra_framework.api import BaseOptions, CdiPolicy


class NvidiaOptions(BaseOptions):
    """All keys are camelCase in YAML. ``hostRoot`` (from BaseOptions): where the host's /sys,
    /dev and /proc are visible to the plugin."""

    nvml: str = Field("real", description="'real' (pynvml, library from driverRoot), 'fake' (fake NVML "
                      "described by <hostRoot>/nvml.json), 'fake:<preset>' (dgx-a100, dgx-h100, dgx-h200) or "
                      "'fake:<path to host JSON>'.")
    driver_root: str = Field("/", alias="driverRoot", description="Where the driver's libraries and binaries "
                             "are visible to the plugin (e.g. /driver-root); libnvidia-ml.so.1 is loaded from here.")
    host_driver_root: str | None = Field(None, alias="hostDriverRoot", description="The same directory as the "
                                         "host sees it (e.g. / or /run/nvidia/driver); CDI mounts use it. "
                                         "Default: driverRoot.")
    mig_strategy: Literal["none", "static", "dynamic"] = Field(
        "static", alias="migStrategy", description="none: publish full GPUs only; static: publish existing MIG "
        "devices; dynamic: publish every MIG profile x placement as a partitionable device and create it at prepare.")
    unowned_mig_policy: Literal["adopt", "destroy", "refuse"] = Field(
        "destroy", alias="unownedMigPolicy", description="dynamic MIG, at start-up: what to do with MIG instances "
        "no checkpointed claim owns. adopt: publish them as they are; destroy: tear them down (logged); refuse: "
        "taint the GPU's devices gpu.nvidia.com/unmanaged-mig:NoSchedule.")
    health_check: bool = Field(True, alias="healthCheck", description="Watch NVML events and taint devices.")
    additional_xids_to_ignore: list[int] = Field(default_factory=list, alias="additionalXidsToIgnore",
                                                 description="XIDs tainted with effect None besides 13,31,43,45,68,109.")
    xid_quiet_period_seconds: float = Field(600.0, alias="xidQuietPeriodSeconds", ge=0,
                                            description="An XID/ECC taint is removed after this long without a new "
                                            "event on the device and with the GPU responsive; 0: never (until restart).")
    event_wait_ms: int = Field(1000, alias="eventWaitMs", ge=50, le=5000,
                               description="Timeout of one blocking NVML event wait (bounds shutdown latency).")
    executor: Literal["auto", "nvidia-smi", "record"] = Field(
        "auto", description="How time-slice and compute-mode changes run. auto: nvidia-smi with real NVML, "
        "record (log to <stateDir>/executor.jsonl, change nothing) with the fake.")
    nvidia_cdi_hook_path: str | None = Field(None, alias="nvidiaCdiHookPath", description="Host path of "
                                             "nvidia-cdi-hook; when set, CDI edits add its create-symlinks and "
                                             "update-ldcache hooks.")

    @property
    def host_driver_root_path(self) -> str:
        return self.host_driver_root or self.driver_root

    def default_cdi_policy(self) -> CdiPolicy:
        """The edits :mod:`backends.nvidia.cdi_edits` writes: NVIDIA device nodes, read-only mounts
        of the driver's libraries, binaries, firmware and persistenced socket from hostDriverRoot,
        the nvidia-cdi-hook when configured, ``NVIDIA_*`` env."""
        root = self.host_driver_root_path if self.host_driver_root_path.startswith("/") else "/"
        dirs = ("usr/lib", "usr/lib64", "lib", "lib64", "usr/bin", "bin", "run/nvidia-persistenced")
        return CdiPolicy(device_nodes=("/dev/nvidia*",),
                         mounts=tuple(posixpath.join(root, d) for d in dirs),
                         hooks=(self.nvidia_cdi_hook_path,) if self.nvidia_cdi_hook_path else (),
                         env=("NVIDIA_*",))

    def static_host_paths(self) -> dict[str, str]:
        """The hook and (when set) hostDriverRoot, which every claim's mounts are under."""
        out = {"nvidiaCdiHookPath": self.nvidia_cdi_hook_path} if self.nvidia_cdi_hook_path else {}
        if self.host_driver_root:
            out["hostDriverRoot"] = self.host_driver_root
        return out
