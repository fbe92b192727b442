"""Consumable GPU shares (DRAConsumableCapacity, KEP-5075): several claims share one device by memory.

With ``consumableShares: memory`` a full GPU (and a static MIG device) is published with
``allowMultipleAllocations: true`` and its ``memory`` capacity gets a ``requestPolicy``: a range
``[shareMemoryMin, whole device]`` in steps of ``shareMemoryStep`` (or the listed
``shareMemoryValues``) and a default, by default the whole device, so a claim that names no
memory still gets the GPU alone. The scheduler gives each allocation a share ID and the memory it
consumed; prepare gets both (``AllocatedDevice.share_id`` / ``consumed_capacity``).

Shapes and limits (API validation of ``DeviceCapacity.requestPolicy``): ``max`` and ``default``
are multiples of ``step`` and ``min + step <= value``; ``validValues`` has at most 10 ascending
entries and contains the default. The device's memory is rarely a multiple of 1Gi on real boards
(an H100 reports 79.6 GiB), so ``max`` is the memory rounded down to the step.
"""
from __future__ import annotations

import math
import re
from typing import Any, Mapping

from dra_framework.api import Capacity, RequestPolicy, ValidRange, quantity_value

from .options import NvidiaOptions

#: Advisory env of a share (no enforcement without MPS): ``<prefix>_<DEVICE>`` = share ID / bytes.
SHARE_ENV, SHARE_MEMORY_ENV = "NVIDIA_DRA_SHARE", "NVIDIA_DRA_SHARE_MEMORY"


def q(v: Any) -> int:
    """A quantity (``"20Gi"``, ``1024``) as whole bytes, rounded up."""
    return int(math.ceil(quantity_value(v)))


def memory_capacity(total: int, o: NvidiaOptions) -> Capacity:
    """The ``memory`` capacity of a shared device of ``total`` bytes. ValueError (naming the
    option) when the options do not fit this device."""
    if o.share_memory_values:
        vals = [q(v) for v in o.share_memory_values]
        if vals[-1] > total:
            raise ValueError(f"shareMemoryValues: {o.share_memory_values[-1]} exceeds the device's memory ({total} bytes)")
        default = q(o.share_memory_default) if o.share_memory_default is not None else vals[-1]
        if default not in vals:
            raise ValueError(f"shareMemoryDefault: {o.share_memory_default} is not one of shareMemoryValues")
        return Capacity(total, RequestPolicy(default=default, valid_values=vals))
    step = q(o.share_memory_step)
    top = total - total % step
    low = q(o.share_memory_min) if o.share_memory_min is not None else step
    if top < step or low + step > total:
        raise ValueError(f"shareMemoryStep/shareMemoryMin: the device has only {total} bytes of memory")
    default = q(o.share_memory_default) if o.share_memory_default is not None else top
    if default % step or not low <= default <= top:
        raise ValueError(f"shareMemoryDefault: {o.share_memory_default} must be a multiple of shareMemoryStep "
                         f"between shareMemoryMin and {top}")
    return Capacity(total, RequestPolicy(default=default, valid_range=ValidRange(min=low, max=top, step=step)))


def env_suffix(device: str) -> str:
    """``gpu-0000-1b-00-0`` → ``GPU_0000_1B_00_0`` (env names are upper-case C identifiers)."""
    return re.sub(r"[^A-Z0-9]", "_", device.upper())


def share_env(device: str, share_id: str, consumed: Mapping[str, str]) -> dict[str, str]:
    """The advisory env of one share: its ID and (when consumed) its memory in bytes."""
    env = {f"{SHARE_ENV}_{env_suffix(device)}": share_id}
    if "memory" in consumed:
        env[f"{SHARE_MEMORY_ENV}_{env_suffix(device)}"] = str(q(consumed["memory"]))
    return env


def consumed_memory(consumed: Mapping[str, str]) -> int | None:
    """Bytes of ``memory`` a share consumed, or None."""
    return q(consumed["memory"]) if "memory" in consumed else None
