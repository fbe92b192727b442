"""Devices, capacities, counter sets, taints and pools: what a backend's discovery produces.

Each class mirrors one resource.k8s.io/v1 ResourceSlice type (Kubernetes 1.34+); the core turns
them into API objects (``dra_framework.slices``). Names here are not validated on construction:
the publisher validates them with the API server's rules and reports bad devices one by one.
"""
from __future__ import annotations

from dataclasses import dataclass, field
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
    memory, a count for engines)."""

    value: Quantity
    request_policy: RequestPolicy | None = None


@dataclass(frozen=True, slots=True)
class CounterSet:
    """ResourceSlice.spec.sharedCounters[]: a named set of counters (DNS labels) that devices of
    the same pool consume (KEP-4815 partitionable devices). Values are quantities."""

    name: str
    counters: Mapping[str, Quantity]


@dataclass(frozen=True, slots=True)
class CounterConsumption:
    """Device.consumesCounters[]: what allocating this device takes from ``counter_set``."""

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

    - ``name``: DNS label, unique in the pool, stable across restarts and reboots.
    - ``attributes``: qualified name → value; names without a domain belong to the driver's
      domain. At most 32 attributes plus capacities in all.
    - ``capacity``: qualified name → Capacity or a bare quantity.
    - ``consumes_counters``: at most 2 entries (1.35+) against counter sets of the same pool.
    - ``taints``: static taints from discovery; health taints are added by the core.
    - ``allow_multiple_allocations``: the device can be shared by several claims, its capacities
      are consumable (DRAConsumableCapacity).
    - ``data``: backend-private data kept in memory for prepare (paths, minors, UUIDs); never
      published.
    """

    name: str
    attributes: Mapping[str, AttributeValue] = field(default_factory=dict)
    capacity: Mapping[str, Capacity | Quantity] = field(default_factory=dict)
    consumes_counters: Sequence[CounterConsumption] = ()
    taints: Sequence[Taint] = ()
    allow_multiple_allocations: bool = False
    data: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)


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
