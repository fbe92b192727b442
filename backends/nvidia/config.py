"""Opaque device configs (``resource.nvidia.com/v1beta1``), same shapes as the NVIDIA DRA driver:

GpuConfig:        {sharing: {strategy: TimeSlicing|MPS, timeSlicingConfig: {interval}, mpsConfig: {...}}}
MigDeviceConfig:  {sharing: {strategy: TimeSlicing|MPS, mpsConfig: {...}}}  (time-slicing is a no-op on MIG)

Decoding is strict (unknown fields are errors naming the field). Semantic checks raise
ValueError whose message starts with the field path.
"""
from __future__ import annotations

from typing import Iterable, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from dra_framework.api import OpaqueConfig, quantity_value

C = TypeVar("C", bound=OpaqueConfig)

API_VERSION = "resource.nvidia.com/v1beta1"
MIB = 1 << 20

#: nvidia-smi compute-policy --set-timeslice values.
TIMESLICE_VALUES = {"Default": 0, "Short": 1, "Medium": 2, "Long": 3}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


def _check_limit(v: str | int, field: str) -> str | int:
    try:
        q = quantity_value(v)
    except ValueError:
        raise ValueError(f"{field}: invalid limit {v!r}: not a quantity") from None
    if q < MIB:
        raise ValueError(f"{field}: invalid limit {v!r}: must be at least 1Mi")
    return v


class TimeSlicingConfig(_Strict):
    interval: Literal["Default", "Short", "Medium", "Long"] = "Default"


class MpsConfig(_Strict):
    default_active_thread_percentage: int | None = Field(None, alias="defaultActiveThreadPercentage", ge=0, le=100)
    default_pinned_device_memory_limit: str | int | None = Field(None, alias="defaultPinnedDeviceMemoryLimit")
    default_per_device_pinned_memory_limit: dict[str, str | int] = Field(
        default_factory=dict, alias="defaultPerDevicePinnedMemoryLimit")

    @field_validator("default_pinned_device_memory_limit")
    @classmethod
    def _limit(cls, v):
        return v if v is None else _check_limit(v, "defaultPinnedDeviceMemoryLimit")

    @field_validator("default_per_device_pinned_memory_limit")
    @classmethod
    def _limits(cls, v):
        for dev, lim in v.items():
            _check_limit(lim, f"defaultPerDevicePinnedMemoryLimit[{dev}]")
        return v


class GpuSharing(_Strict):
    strategy: Literal["TimeSlicing", "MPS"] = "TimeSlicing"
    time_slicing_config: TimeSlicingConfig | None = Field(None, alias="timeSlicingConfig")
    mps_config: MpsConfig | None = Field(None, alias="mpsConfig")

    @model_validator(mode="after")
    def _consistent(self):
        if self.strategy == "TimeSlicing" and self.mps_config is not None:
            raise ValueError("mpsConfig: only allowed with strategy MPS")
        if self.strategy == "MPS" and self.time_slicing_config is not None:
            raise ValueError("timeSlicingConfig: only allowed with strategy TimeSlicing")
        return self


class MigSharing(_Strict):
    strategy: Literal["TimeSlicing", "MPS"] = "TimeSlicing"
    mps_config: MpsConfig | None = Field(None, alias="mpsConfig")

    @model_validator(mode="after")
    def _consistent(self):
        if self.strategy == "TimeSlicing" and self.mps_config is not None:
            raise ValueError("mpsConfig: only allowed with strategy MPS")
        return self


class GpuConfig(OpaqueConfig):
    """Config for full GPUs (``type == "gpu"``)."""

    api_version = API_VERSION
    kind = "GpuConfig"
    sharing: GpuSharing | None = None

    def timeslice(self) -> str | None:
        """The time-slice interval to apply, or None when time-slicing is not configured."""
        if self.sharing is None or self.sharing.strategy != "TimeSlicing":
            return None
        return (self.sharing.time_slicing_config or TimeSlicingConfig()).interval


class MigDeviceConfig(OpaqueConfig):
    """Config for MIG devices (``type == "mig"``)."""

    api_version = API_VERSION
    kind = "MigDeviceConfig"
    sharing: MigSharing | None = None


CONFIG_TYPES = [GpuConfig, MigDeviceConfig]


def applies_to(config: OpaqueConfig, device_type: str) -> bool:
    """Whether a config of this kind is meant for devices of ``device_type`` at all."""
    if isinstance(config, GpuConfig):
        return device_type == "gpu"
    if isinstance(config, MigDeviceConfig):
        return device_type == "mig"
    return True


def check_applicable(config: OpaqueConfig, device_name: str, device_type: str) -> None:
    """Raise ValueError when ``config`` may not be applied to a device of ``device_type``."""
    if isinstance(config, GpuConfig) and device_type != "gpu":
        raise ValueError(f"kind: cannot apply GpuConfig to device {device_name!r} of type {device_type!r} "
                         "(use MigDeviceConfig)")
    if isinstance(config, MigDeviceConfig) and device_type != "mig":
        raise ValueError(f"kind: cannot apply MigDeviceConfig to device {device_name!r} of type {device_type!r} "
                         "(use GpuConfig)")


def effective(configs: Iterable[object], kind: type[C]) -> C | None:
    """The last config of ``kind`` (later entries win, class configs before claim configs)."""
    found: C | None = None
    for c in configs:
        if isinstance(c, kind):
            found = c
    return found
