"""Devices, capacities, counter sets, taints and pools: what a backend's discovery produces.

Each class mirrors one resource.k8s.io/v1 ResourceSlice type (Kubernetes 1.34+); the core turns
them into API objects (``dra_framework.slices``). Names here are not validated on construction:
the publisher validates them with the API server's rules and reports bad devices one by one.
"""
from __future__ import annotations

from collections.abc import Mapping as _MappingABC
from dataclasses import KW_ONLY, dataclass, field
from enum import Enum
from typing import Any, Mapping, Sequence

from .attributes import AttributeValue, Quantity


@dataclass(frozen=True, slots=True)
class ValidRange:
    """DeviceCapacity.requestPolicy.validRange: min ≤ request ≤ max, in multiples of step."""

    min: Quantity
    max: Quantity | None = None
    step: Quantity | None = None


@dataclass(frozen=True, slots=True)
class RequestPolicy:
    """DeviceCapacity.requestPolicy (DRAConsumableCapacity): how much of a consumable capacity one
    request takes. Only meaningful when the device sets ``allow_multiple_allocations``.

    ``default`` is taken when a request names no amount; exactly one of ``valid_values``
    (≤10, ascending, containing default) or ``valid_range`` restricts requests, which the
    scheduler rounds up to the next valid value.
    """

    default: Quantity | None = None
    valid_values: Sequence[Quantity] = ()
    valid_range: ValidRange | None = None


@dataclass(frozen=True, slots=True)
class Capacity:
    """DeviceCapacity: ``value`` is the total amount, in the capacity's own unit (bytes for
    memory, a count for engines), as an int or a quantity string (``"80Gi"``).
    ``request_policy`` (consumable capacity only) limits what one claim may take."""

    value: Quantity
    request_policy: RequestPolicy | None = None


@dataclass(frozen=True, slots=True)
class CounterSet:
    """ResourceSlice.spec.sharedCounters[]: a named set of counters that devices of the same
    pool consume (KEP-4815 partitionable devices), e.g.
    ``CounterSet("gpu-0-counters", {"memory": 80 << 30, "sm": 132})``.

    - ``name``: DNS label, unique in the pool.
    - ``counters``: counter name (DNS label) → total amount (int in the counter's own unit, or a
      quantity string such as ``"80Gi"``).
    """

    name: str
    counters: Mapping[str, Quantity]


@dataclass(frozen=True, slots=True)
class CounterConsumption:
    """Device.consumesCounters[]: what allocating this device takes from ``counter_set`` (the
    ``name`` of a :class:`CounterSet` in the same pool), e.g.
    ``CounterConsumption("gpu-0-counters", {"memory": 10 << 30, "sm": 16})``; ``counters`` maps
    counter name → amount, a subset of the set's counters."""

    counter_set: str
    counters: Mapping[str, Quantity]


class TaintEffect(str, Enum):
    """DeviceTaint.effect (KEP-5055). Consumers treat unknown effects as None."""

    NONE = "None"
    NO_SCHEDULE = "NoSchedule"
    NO_EXECUTE = "NoExecute"


@dataclass(frozen=True, slots=True)
class Taint:
    """DeviceTaint: key is a label name (e.g. ``gpu.nvidia.com/xid``), value a label value."""

    key: str
    value: str = ""
    effect: TaintEffect = TaintEffect.NO_SCHEDULE


@dataclass(frozen=True, slots=True)
class Device:
    """One device of a pool (ResourceSlice.spec.devices[]).

    Only ``name`` is positional; every other field is keyword-only::

        Device("acc-0", attributes={"model": "x1", "firmware": Version("1.2.0")},
               capacity={"memory": Capacity(16 << 30)},
               consumes_counters=[CounterConsumption("acc-0-counters", {"memory": 16 << 30})],
               data={"pci": "0000:3b:00.0"})

    - ``name``: DNS label (≤63 lowercase alphanumerics and '-'), unique in the pool, stable
      across restarts and reboots.
    - ``attributes``: qualified name → value (int, bool, str ≤64 chars, :class:`Version`, or a
      list of one of those); names without a domain belong to the driver's domain. At most 32
      attributes plus capacities in all.
    - ``capacity``: qualified name → :class:`Capacity` or a bare quantity (int in the
      capacity's own unit, bytes for memory; or a string such as ``"80Gi"``).
    - ``consumes_counters``: :class:`CounterConsumption` entries against counter sets of the
      same pool (at most 2 on Kubernetes 1.35+; docs/resourceslices.md).
    - ``taints``: static :class:`Taint` entries from discovery; health taints are added by
      the core from the health source.
    - ``allow_multiple_allocations``: the device can be shared by several claims, its
      capacities are consumable (DRAConsumableCapacity).
    - ``data``: backend-private JSON-like data kept in memory for prepare (paths, minors,
      UUIDs), read back as ``AllocatedDevice.device.data``; never published.

    Raises TypeError naming the device and field when a field has the wrong shape (a list where
    a mapping belongs). Names and limits are checked when the slice is built: a bad device is
    reported and left out, the others are published.
    """

    name: str
    _: KW_ONLY
    attributes: Mapping[str, AttributeValue] = field(default_factory=dict)
    capacity: Mapping[str, Capacity | Quantity] = field(default_factory=dict)
    consumes_counters: Sequence[CounterConsumption] = ()
    taints: Sequence[Taint] = ()
    allow_multiple_allocations: bool = False
    data: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise TypeError(f"Device name must be a str, got {type(self.name).__name__}")
        for fname in ("attributes", "capacity", "data"):
            if not isinstance(getattr(self, fname), _MappingABC):
                raise TypeError(f"Device {self.name!r}: {fname} must be a mapping, got "
                                f"{type(getattr(self, fname)).__name__}")
        for fname, kind in (("consumes_counters", CounterConsumption), ("taints", Taint)):
            value = getattr(self, fname)
            if isinstance(value, (str, bytes, _MappingABC)) or not all(isinstance(v, kind) for v in value):
                raise TypeError(f"Device {self.name!r}: {fname} must be a list of {kind.__name__}")


@dataclass(frozen=True, slots=True)
class NodeSelection:
    """Where a pool's devices are reachable (ResourceSlice.spec nodeName | nodeSelector | allNodes).

    The default, ``node_local``, ties the pool to this node (nodeName plus an owner reference to
    the Node). ``node_selector`` is a core/v1 NodeSelector dict with exactly one term.
    """

    node_local: bool = True
    node_selector: Mapping[str, Any] | None = None
    all_nodes: bool = False


@dataclass(slots=True)
class Pool:
    """A pool of devices (ResourceSlice.spec.pool). ``name`` is None for the driver's default
    node pool, which is named after the node; other names are DNS subdomains joined by '/'."""

    name: str | None = None
    devices: list[Device] = field(default_factory=list)
    counter_sets: list[CounterSet] = field(default_factory=list)
    selection: NodeSelection = field(default_factory=NodeSelection)
