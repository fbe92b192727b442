"""Options of the ``fpga`` backend (``drivers[].backends[].options``; camelCase in YAML)."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from dra_framework.api import BaseOptions, CdiPolicy

from .ids import normalize_uuid


class FpgaOptions(BaseOptions):
    """``hostRoot`` (from BaseOptions): where the host's /sys, /dev and /proc are visible."""

    image_dirs: list[str] = Field(default_factory=list, alias="imageDirs", description=(
        "Host directories (absolute, seen under hostRoot) that hold the images prepare may load "
        "(.gbs for DFL, .xclbin for Alveo). Nothing else is ever loaded: a path outside them, or "
        "a symbolic link leading out of them, is refused. Empty: programming is off."))
    default_functions: dict[str, str] = Field(default_factory=dict, alias="defaultFunctions", description=(
        "interfaceId → afuId (32 hex) or image name to load at unprepare when a claim changed the "
        "card's function; cards of other interfaces keep the last function."))
    executor: Literal["auto", "kernel", "fake"] = Field("auto", description=(
        "How images are written. kernel: the DFL FME's partial-reconfiguration ioctl (the "
        "kernel's FPGA manager) and XRT's xbmgmt for Alveo. fake: change the afu id in the "
        "sample host's sysfs tree and log to <stateDir>/executor.jsonl (tests, demos). auto: "
        "kernel when hostRoot is /, else fake."))
    xbmgmt: str = Field("/opt/xilinx/xrt/bin/xbmgmt", description="XRT's xbmgmt, as the plugin sees it.")
    program_timeout: float = Field(300.0, alias="programTimeoutSeconds", gt=0,
                                   description="Limit for one programming command (xbmgmt).")
    max_image_bytes: int = Field(1 << 30, alias="maxImageBytes", gt=0,
                                 description="Larger images are refused (they are read into memory to be hashed).")
    health_interval: float = Field(10.0, alias="healthIntervalSeconds", gt=0,
                                   description="Seconds between health probes of every card.")
    keep_missing: float = Field(600.0, alias="keepMissingSeconds", ge=0, description=(
        "A card that disappears (reset, re-enumeration) stays published, tainted, this long "
        "before it is dropped; it keeps its device name when it comes back."))
    hotplug: bool = Field(True, description="Rediscover on udev PCI events (needs hostNetwork: true).")

    @field_validator("image_dirs")
    @classmethod
    def _absolute(cls, v: list[str]) -> list[str]:
        for d in v:
            if not d.startswith("/"):
                raise ValueError(f"{d!r}: image directories are host paths and must be absolute")
        return v

    @field_validator("default_functions")
    @classmethod
    def _defaults(cls, v: dict[str, str]) -> dict[str, str]:
        out = {}
        for iface, spec in v.items():
            key = normalize_uuid(iface)
            if key is None:
                raise ValueError(f"{iface!r}: keys are interface ids (32 hex digits, dashes allowed)")
            if not spec or spec.startswith("/") or ".." in spec.split("/"):
                raise ValueError(f"{iface}: {spec!r} must be an afuId or an image name relative to an image directory")
            out[key] = normalize_uuid(spec) or spec
        return out

    def default_cdi_policy(self) -> CdiPolicy:
        """DFL port/FME nodes, Alveo render and management nodes; ``FPGA_*`` env; nothing else."""
        return CdiPolicy.model_validate({
            "deviceNodes": ("/dev/dfl-port.*", "/dev/dfl-fme.*", "/dev/intel-fpga-port.*", "/dev/intel-fpga-fme.*",
                            "/dev/dri/renderD*", "/dev/xclmgmt*"),
            "env": ("FPGA_*",)})
