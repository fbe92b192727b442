"""Consumable capacity as the allocator checks it (structured ``consumable_capacity.go``).

Every device capacity is "consumed" by a request: the requested amount rounded up to the
capacity's ``requestPolicy`` (``validRange`` min/step, ``validValues``), else the policy default,
else the whole value. A device fits when, per capacity, the request does not violate the policy
and what other claims consumed (shared devices) + this claim + this request is at most the value.
"""
from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

from .model import Device, fmt, qty


class CapacityError(Exception):
    """A request the allocator cannot compute (negative or unrepresentable): an allocation error."""


def _ceil_int(d: Decimal) -> int:
    return int(math.ceil(d))  # Quantity.Value() rounds up


def _milli_ok(d: Decimal) -> bool:
    return (d * 1000) == (d * 1000).to_integral_value()


def _use_milli(rng: dict[str, Any], fractional: bool) -> bool:
    if not fractional:
        return False
    for key in ("min", "max", "step"):
        if rng.get(key) is not None:
            v = qty(rng[key])
            if not _milli_ok(v) or (key == "step" and v * 1000 < 1):
                return False
    return True


def consumed(request: Decimal | None, cap: dict[str, Any], fractional: bool) -> Decimal:
    """``calculateConsumedCapacity``: what a request takes of one capacity."""
    policy = cap.get("requestPolicy")
    if request is None:
        if policy and policy.get("default") is not None:
            return qty(policy["default"])
        return qty(cap.get("value", 0))
    if not policy:
        return request
    rng = policy.get("validRange")
    if rng and rng.get("min") is not None:
        lo = qty(rng["min"])
        if request < lo:
            return lo
        if rng.get("step") is None:
            return request
        step = qty(rng["step"])
        if _use_milli(rng, fractional):
            if not _milli_ok(request):
                raise CapacityError(f"request {request} is not a representable milli value")
            n = math.ceil((request - lo) * 1000 / (step * 1000))
            return lo + step * n
        lo_i, step_i = _ceil_int(lo), _ceil_int(step)
        n = math.ceil(Decimal(_ceil_int(request) - lo_i) / step_i)
        return Decimal(lo_i + step_i * n)
    values = policy.get("validValues")
    if values is not None:
        for v in values:
            if request <= qty(v):
                return qty(v)
    return request


def violates(value: Decimal, policy: dict[str, Any] | None, fractional: bool) -> str:
    """Why ``value`` breaks the capacity's request policy, or ""."""
    if not policy:
        return ""
    if policy.get("default") is not None and value == qty(policy["default"]):
        return ""
    rng = policy.get("validRange")
    if rng is not None:
        if rng.get("max") is not None and value > qty(rng["max"]):
            return f"{fmt(value)} is above validRange.max {rng['max']}"
        if rng.get("step") is not None:
            lo, step = qty(rng.get("min", 0)), qty(rng["step"])
            if _use_milli(rng, fractional):
                if not _milli_ok(value):
                    return f"{fmt(value)} is not a whole number of milli-units"
                off = (value - lo) * 1000 % (step * 1000)
            else:
                off = Decimal((_ceil_int(value) - _ceil_int(lo)) % _ceil_int(step))
            if off != 0:
                return f"{fmt(value)} is not min {rng.get('min')} plus a multiple of step {rng['step']}"
        return ""
    values = policy.get("validValues") or []
    if values and all(value != qty(v) for v in values):
        return f"{fmt(value)} is not one of validValues {', '.join(str(v) for v in values)}"
    return ""


def fits(device: Device, requests: dict[str, Decimal] | None, in_use: dict[str, Decimal],
         allocating: dict[str, Decimal], fractional: bool) -> str:
    """``CmpRequestOverCapacity``: "" when the request fits, else why not. Raises CapacityError."""
    for name in requests or {}:
        if name not in device.capacity:
            return f"requests capacity {name}, which the device does not have"
    took: dict[str, Decimal] = {}
    for name, cap in device.capacity.items():
        c = consumed((requests or {}).get(name), cap, fractional)
        if c < 0:
            raise CapacityError(f'capacity "{name}": capacity value is negative')
        took[name] = c
    for name, cap in device.capacity.items():
        why = violates(took[name], cap.get("requestPolicy"), fractional)
        if why:
            return f"capacity {name}: request {why}"
        total = in_use.get(name, Decimal(0)) + took[name] + allocating.get(name, Decimal(0))
        value = qty(cap.get("value", 0))
        if total > value:
            used = in_use.get(name, Decimal(0)) + allocating.get(name, Decimal(0))
            return f"capacity {name}: needs {fmt(took[name])}, {fmt(value - used)} of {fmt(value)} left"
    return ""


def consumption(device: Device, requests: dict[str, Decimal] | None, fractional: bool) -> dict[str, Decimal]:
    """``GetConsumedCapacityFromRequest``: the consumedCapacity of a shared allocation."""
    return {name: consumed((requests or {}).get(name), cap, fractional) for name, cap in device.capacity.items()}
