"""Options of the ``tpu`` backend (``drivers[].backends[].options``; docs/tpu.md, "Options")."""
from __future__ import annotations

from pydantic import Field, field_validator

from dra_framework.api import BaseOptions, CdiPolicy

from .topology import topology_dims


class TpuOptions(BaseOptions):
    """All keys are camelCase in YAML. ``hostRoot`` (from BaseOptions): where the host's /sys,
    /dev, /proc and /etc/tpu are visible to the plugin."""

    accelerator_type: str | None = Field(None, alias="acceleratorType", description="The host's accelerator "
                                         "type (v5litepod-8, tpu-v6e-slice, ...); overrides the tpu-env file "
                                         "and the Node labels.")
    topology: str | None = Field(None, description="The slice topology (2x4, 2x2x1, 4x4 for a multi-host "
                                 "slice); overrides the other sources.")
    tpu_env_file: str = Field("/etc/tpu/tpu-env", alias="tpuEnvFile", description="The TPU env file the Cloud "
                              "TPU runtime writes, as a host path (read under hostRoot).")
    node_labels: dict[str, str] = Field(default_factory=dict, alias="nodeLabels", description="Node labels to "
                                        "use instead of reading the Node from the API server (canonical "
                                        "tpu.google.com/* or GKE cloud.google.com/gke-tpu-* names).")
    read_node_labels: bool = Field(True, alias="readNodeLabels", description="Read the Node's labels from the "
                                   "API server when neither the options nor the tpu-env file name the accelerator.")
    kubeconfig: str = Field("", description="Kubeconfig for reading the Node; empty: $DRA_FRAMEWORK_KUBECONFIG, "
                            "$KUBECONFIG, then the in-cluster config.")
    health_interval: float = Field(10.0, alias="healthIntervalSeconds", gt=0, description="Seconds between two "
                                   "checks of every chip's device file and PCI function.")
    check_open_processes: bool = Field(True, alias="checkOpenProcesses", description="Fail a prepare when a "
                                       "process no prepared claim owns has one of the claim's chips open "
                                       "(scans /proc/*/fd under hostRoot).")
    base_port: int = Field(8476, alias="basePort", ge=1024, le=65000, description="TPU_PROCESS_PORT of the "
                           "device starting at chip 0; a device starting at chip i gets basePort + i.")

    @field_validator("topology")
    @classmethod
    def _topology_form(cls, v: str | None) -> str | None:
        # A malformed value here is the admin's typo: refuse it naming options.topology rather
        # than warn at discovery and fall back to another source.
        if v is not None:
            topology_dims(v)
        return v

    def default_cdi_policy(self) -> CdiPolicy:
        """TPU chip nodes (``/dev/accelN`` or ``/dev/vfio/<group>`` and ``/dev/vfio/vfio``) and ``TPU_*`` env."""
        return CdiPolicy.model_validate({"deviceNodes": ("/dev/accel*", "/dev/vfio/*"), "env": ("TPU_*",)})
