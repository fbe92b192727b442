"""Health reports a backend's health source sends (KEP-4680 health and KEP-5055 taints)."""
from __future__ import annotations

from dataclasses import KW_ONLY, dataclass
from enum import Enum
from typing import Sequence

from .devices import Taint


class Health(str, Enum):
    """Device health as the kubelet's health API names it (docs/protocol.md#health-stream)."""

    HEALTHY = "Healthy"
    UNHEALTHY = "Unhealthy"
    UNKNOWN = "Unknown"


@dataclass(frozen=True, slots=True)
class HealthReport:
    """The current health of one device: ``HealthReport("gpu-0", Health.UNHEALTHY, message="XID 79",
    taints=[Taint("gpu.example.com/xid", "79", TaintEffect.NO_EXECUTE)])``; fields after
    ``health`` are keyword-only.

    ``taints`` replace the device's previous health taints (an empty list removes them: the device
    recovered). ``pool=None`` is the default node pool. ``message`` is shown to users in the pod's
    allocatedResourcesStatus.
    """

    device: str
    health: Health
    _: KW_ONLY
    pool: str | None = None
    message: str = ""
    taints: Sequence[Taint] = ()
