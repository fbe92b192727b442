"""Options of the ``nvidia`` backend (``drivers[].backends[].options`` in the config)."""
from __future__ import annotations

import posixpath
from typing import Literal

from pydantic import Field, model_validator

from dra_framework.api import BaseOptions, CdiPolicy, quantity_value


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

    consumable_shares: Literal["off", "memory"] = Field(
        "off", alias="consumableShares", description="memory: publish full GPUs (and static MIG devices) with "
        "allowMultipleAllocations and a consumable 'memory' capacity, so several claims share one GPU by memory "
        "(DRAConsumableCapacity). Not with migStrategy dynamic or passthrough.")
    share_memory_step: str | int = Field("1Gi", alias="shareMemoryStep", description="Granularity of a share's "
                                         "memory (requestPolicy.validRange.step); requests are rounded up to it.")
    share_memory_min: str | int | None = Field(None, alias="shareMemoryMin", description="Smallest share "
                                               "(validRange.min). Default: shareMemoryStep.")
    share_memory_default: str | int | None = Field(None, alias="shareMemoryDefault", description="Memory of a "
                                                   "request that names none (requestPolicy.default). Default: the "
                                                   "whole device, so a claim unaware of sharing gets it alone.")
    share_memory_values: list[str | int] = Field(default_factory=list, alias="shareMemoryValues", description=""
                                                 "Offer these sizes (requestPolicy.validValues, at most 10, "
                                                 "ascending) instead of a range; the default must be one of them.")
    mps_root: str = Field("/run/nvidia-dra/mps", alias="mpsRoot", description="Host path under which the MPS "
                          "control daemons get their pipe, shm and log directories (created under hostRoot; "
                          "bind-mounted into the workload containers).")
    mps_watch_seconds: float = Field(5.0, alias="mpsWatchSeconds", gt=0, description="How often the liveness of "
                                     "the MPS control daemons is checked.")
    passthrough: bool = Field(False, description="Also publish every GPU (MIG disabled) as a 'vfio' device for "
                              "VFIO passthrough (KubeVirt): prepare binds it to vfio-pci. Not with migStrategy "
                              "dynamic or consumableShares.")
    passthrough_exclude: list[str] = Field(default_factory=list, alias="passthroughExclude", description="PCI "
                                           "addresses never offered for passthrough (pinned by the admin).")

    @model_validator(mode="after")
    def _combinations(self) -> "NvidiaOptions":
        if self.consumable_shares != "off" and self.mig_strategy == "dynamic":
            raise ValueError("consumableShares: not supported with migStrategy dynamic (a dynamically created MIG "
                             "device belongs to one claim); use migStrategy static or none")
        if self.passthrough and self.mig_strategy == "dynamic":
            raise ValueError("passthrough: not supported with migStrategy dynamic; use migStrategy static or none")
        if self.passthrough and self.consumable_shares != "off":
            raise ValueError("passthrough: not supported together with consumableShares (the GPU and its vfio "
                             "sibling share a counter, which Kubernetes 1.34 charges once per share)")
        for name, v in (("shareMemoryStep", self.share_memory_step), ("shareMemoryMin", self.share_memory_min),
                        ("shareMemoryDefault", self.share_memory_default)):
            if v is not None:
                try:
                    q = quantity_value(v)
                except ValueError:
                    raise ValueError(f"{name}: {v!r} is not a quantity") from None
                if q <= 0 and name == "shareMemoryStep":
                    raise ValueError(f"{name}: must be positive")
        if len(self.share_memory_values) > 10:
            raise ValueError("shareMemoryValues: at most 10 values")
        try:
            vals = [quantity_value(v) for v in self.share_memory_values]
        except ValueError as exc:
            raise ValueError(f"shareMemoryValues: {exc}") from None
        if vals != sorted(set(vals)):
            raise ValueError("shareMemoryValues: must be ascending and distinct")
        if not posixpath.isabs(self.mps_root):
            raise ValueError(f"mpsRoot: {self.mps_root!r} must be an absolute host path")
        return self

    @property
    def host_driver_root_path(self) -> str:
        return self.host_driver_root or self.driver_root

    def default_cdi_policy(self) -> CdiPolicy:
        """The edits :mod:`backends.nvidia.cdi_edits` writes: NVIDIA device nodes, read-only mounts
        of the driver's libraries, binaries, firmware and persistenced socket from hostDriverRoot,
        the nvidia-cdi-hook when configured, ``NVIDIA_*`` env."""
        root = self.host_driver_root_path if self.host_driver_root_path.startswith("/") else "/"
        dirs = ("usr/lib", "usr/lib64", "lib", "lib64", "usr/bin", "bin", "run/nvidia-persistenced")
        # MPS clients need the daemon's pipe and shm directories writable; every driver-file mount
        # carries "ro" itself, so allowing read-write mounts only concerns those two.
        return CdiPolicy(device_nodes=("/dev/nvidia*", "/dev/vfio/*"),
                         mounts=tuple(posixpath.join(root, d) for d in dirs) + (self.mps_root,),
                         read_write_mounts=True,
                         hooks=(self.nvidia_cdi_hook_path,) if self.nvidia_cdi_hook_path else (),
                         env=("NVIDIA_*", "CUDA_MPS_*"))

    def static_host_paths(self) -> dict[str, str]:
        """The hook and (when set) hostDriverRoot, which every claim's mounts are under."""
        out = {"nvidiaCdiHookPath": self.nvidia_cdi_hook_path} if self.nvidia_cdi_hook_path else {}
        if self.host_driver_root:
            out["hostDriverRoot"] = self.host_driver_root
        return out
